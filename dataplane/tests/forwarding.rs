//! The forwarding table without sockets: SRTP in from a publisher, one re-protected,
//! rewritten copy out per subscriber; RTCP translated; strangers and garbage dropped.

mod common;

use std::time::{Duration, Instant};

use cascade_dataplane::command::Command;
use cascade_dataplane::rtcp::{self, RtcpKind};
use cascade_dataplane::rtp;
use cascade_dataplane::srtp::SrtpProfile;
use cascade_dataplane::stats::DropReason;
use cascade_dataplane::table::{Disposition, ForwardingTable};
use common::*;

fn setup(profile: SrtpProfile) -> (ForwardingTable, Peer, Vec<Peer>, RecordingSink) {
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let now = Instant::now();
    let publisher = peer(SessionId(1), 5000, profile);
    let subs: Vec<Peer> = (2..5)
        .map(|i| peer(SessionId(i), 6000 + i as u16, profile))
        .collect();
    assert!(table.apply(now, publisher.install.clone(), &mut sink));
    for s in &subs {
        table.apply(now, s.install.clone(), &mut sink);
        table.apply(
            now,
            route(
                SessionId(1),
                0xAAAA,
                s.id,
                0xB000 + s.id.0 as u32,
                (96, 100),
            ),
            &mut sink,
        );
    }
    (table, publisher, subs, sink)
}

#[test]
fn one_copy_per_subscriber_with_rewritten_ssrc_and_pt() {
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let (mut table, mut publisher, mut subs, mut sink) = setup(profile);
        let now = Instant::now();
        for seq in 65_530u16..65_535 {
            let plain = rtp(0xAAAA, seq, 9000, 96, 1100);
            let mut wire = protect(&mut publisher.send, &plain);
            sink.clear();
            let d = table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
            assert_eq!(d, Disposition::Handled);
            assert_eq!(sink.sent.len(), subs.len());
            for (i, s) in subs.iter_mut().enumerate() {
                let (bytes, dest) = sink.datagram(i);
                assert_eq!(dest, s.addr);
                let mut got = bytes.to_vec();
                let n = s
                    .recv
                    .unprotect_rtp(&mut got)
                    .expect("subscriber can decrypt");
                let h = rtp::parse(&got[..n]).unwrap();
                assert_eq!(h.ssrc, 0xB000 + s.id.0 as u32);
                assert_eq!(h.payload_type, 100);
                assert_eq!(h.sequence, seq);
                assert_eq!(&got[12..n], &plain[12..], "payload unchanged");
            }
        }
        assert_eq!(table.stats.packets_out, 5 * subs.len() as u64);
    }
}

#[test]
fn strangers_garbage_and_forgeries_are_dropped_without_side_effects() {
    let (mut table, mut publisher, mut subs, mut sink) = setup(SrtpProfile::AeadAes128Gcm);
    let now = Instant::now();
    // Media from an address that is no session.
    let mut wire = protect(&mut publisher.send, &rtp(0xAAAA, 1, 0, 96, 100));
    let stranger = "10.9.9.9:1".parse().unwrap();
    assert_eq!(
        table.handle_datagram(now, stranger, &mut wire.clone(), &mut sink),
        Disposition::Dropped(DropReason::UnknownSource)
    );
    // A tampered packet from the publisher's address.
    let mut bad = wire.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        table.handle_datagram(now, publisher.addr, &mut bad, &mut sink),
        Disposition::Dropped(DropReason::AuthFailed)
    );
    // Not RTP/RTCP/STUN/DTLS.
    assert_eq!(
        table.handle_datagram(now, publisher.addr, &mut [0xffu8; 40], &mut sink),
        Disposition::Dropped(DropReason::Malformed)
    );
    // STUN and DTLS go to control.
    let mut stun = [0u8; 20];
    stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    assert_eq!(
        table.handle_datagram(now, stranger, &mut stun, &mut sink),
        Disposition::ToControl
    );
    assert!(sink.sent.is_empty(), "nothing forwarded so far");
    // The genuine packet still goes through, then its replay does not.
    assert_eq!(
        table.handle_datagram(now, publisher.addr, &mut wire, &mut sink),
        Disposition::Handled
    );
    assert_eq!(sink.sent.len(), subs.len());
    let mut replay = protect(&mut publisher.send, &rtp(0xAAAA, 2, 0, 96, 100));
    let mut copy = replay.clone();
    table.handle_datagram(now, publisher.addr, &mut replay, &mut sink);
    assert_eq!(
        table.handle_datagram(now, publisher.addr, &mut copy, &mut sink),
        Disposition::Dropped(DropReason::Replayed)
    );
    let (bytes, _) = sink.datagram(0);
    let mut got = bytes.to_vec();
    subs[0].recv.unprotect_rtp(&mut got).unwrap();
}

#[test]
fn subscriber_pli_reaches_publisher_rate_limited_and_translated() {
    let (mut table, publisher, mut subs, mut sink) = setup(SrtpProfile::AeadAes128Gcm);
    let mut publisher = publisher;
    let now = Instant::now();
    // The publisher must have sent on the stream for keyframe requests to be relayed.
    let mut wire = protect(&mut publisher.send, &rtp(0xAAAA, 7, 0, 96, 10));
    table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    let pli_from_sub =
        |sub: &mut Peer, t: Instant, sink: &mut RecordingSink, table: &mut ForwardingTable| {
            let mut buf = [0u8; 64];
            let n = rtcp::write_pli(&mut buf, 0x1234, 0xB000 + sub.id.0 as u32).unwrap();
            let mut out = vec![0u8; 128];
            out[..n].copy_from_slice(&buf[..n]);
            let m = sub.send.protect_rtcp(&mut out, n).unwrap();
            out.truncate(m);
            sink.clear();
            table.handle_datagram(t, sub.addr, &mut out, sink);
            sink.sent.len()
        };
    assert_eq!(pli_from_sub(&mut subs[0], now, &mut sink, &mut table), 1);
    let (bytes, dest) = sink.datagram(0);
    assert_eq!(dest, publisher.addr);
    let mut got = bytes.to_vec();
    let n = publisher.recv.unprotect_rtcp(&mut got).unwrap();
    let pkt = rtcp::packets(&got[..n]).next().unwrap().unwrap();
    match pkt.kind().unwrap() {
        RtcpKind::Pli(p) => assert_eq!(p.media_ssrc, 0xAAAA, "translated to the publisher SSRC"),
        other => panic!("expected PLI, got {other:?}"),
    }
    // A second PLI (another subscriber) within the interval is absorbed.
    assert_eq!(
        pli_from_sub(
            &mut subs[1],
            now + Duration::from_millis(100),
            &mut sink,
            &mut table
        ),
        0
    );
    assert_eq!(
        pli_from_sub(
            &mut subs[1],
            now + Duration::from_millis(600),
            &mut sink,
            &mut table
        ),
        1
    );
}

#[test]
fn receiver_reports_and_removal() {
    let (mut table, mut publisher, subs, mut sink) = setup(SrtpProfile::AeadAes128Gcm);
    let now = Instant::now();
    for seq in 0..10u16 {
        if seq == 4 {
            continue; // lost
        }
        let mut wire = protect(
            &mut publisher.send,
            &rtp(0xAAAA, seq, seq as u32 * 3000, 96, 50),
        );
        table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    }
    sink.clear();
    let later = now + Duration::from_secs(2);
    table.handle_timeout(later, &mut sink);
    let rr = sink
        .sent
        .iter()
        .enumerate()
        .find(|(_, (_, d))| *d == publisher.addr)
        .map(|(i, _)| i)
        .expect("RR to publisher");
    let mut got = sink.datagram(rr).0.to_vec();
    let n = publisher.recv.unprotect_rtcp(&mut got).unwrap();
    let pkt = rtcp::packets(&got[..n]).next().unwrap().unwrap();
    let RtcpKind::ReceiverReport(r) = pkt.kind().unwrap() else {
        panic!("expected RR");
    };
    let block = r.reports.clone().next().unwrap();
    assert_eq!(block.ssrc, 0xAAAA);
    assert_eq!(block.cumulative_lost, 1);
    assert_eq!(block.extended_highest_seq, 9);

    // Removing a subscriber stops its copies; removing the publisher frees all.
    table.apply(later, Command::RemoveSession { id: subs[0].id }, &mut sink);
    sink.clear();
    let mut wire = protect(&mut publisher.send, &rtp(0xAAAA, 10, 0, 96, 50));
    table.handle_datagram(later, publisher.addr, &mut wire, &mut sink);
    assert_eq!(sink.sent.len(), subs.len() - 1);
    table.apply(
        later,
        Command::RemoveSession { id: publisher.id },
        &mut sink,
    );
    assert!(!table.knows_peer(&publisher.addr));
    assert_eq!(table.session_count(), subs.len() - 1);
}

/// Protects and hands an RTCP packet from `peer` to the table.
fn rtcp_from(table: &mut ForwardingTable, peer: &mut Peer, plain: &[u8], sink: &mut RecordingSink) {
    let mut out = vec![0u8; plain.len() + 32];
    out[..plain.len()].copy_from_slice(plain);
    let m = peer.send.protect_rtcp(&mut out, plain.len()).unwrap();
    out.truncate(m);
    table.handle_datagram(Instant::now(), peer.addr, &mut out, sink);
}

#[test]
fn nacks_are_answered_from_the_cache_and_only_misses_go_upstream() {
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let now = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let mut rtx_sub = peer(SessionId(2), 6002, SrtpProfile::AeadAes128Gcm);
    let mut plain_sub = peer(SessionId(3), 6003, SrtpProfile::AeadAes128Gcm);
    for p in [&publisher, &rtx_sub, &plain_sub] {
        table.apply(now, p.install.clone(), &mut sink);
    }
    table.apply(
        now,
        route_rtx(
            SessionId(1),
            0xAAAA,
            SessionId(2),
            0xB002,
            (96, 100),
            Some((0xAAAB, 97)),
            Some((0xC002, 101)),
        ),
        &mut sink,
    );
    table.apply(
        now,
        route_rtx(
            SessionId(1),
            0xAAAA,
            SessionId(3),
            0xB003,
            (96, 96),
            Some((0xAAAB, 97)),
            None,
        ),
        &mut sink,
    );
    let originals: Vec<Vec<u8>> = (100u16..110).map(|s| rtp(0xAAAA, s, 0, 96, 500)).collect();
    for (i, p) in originals.iter().enumerate() {
        if i == 5 {
            continue; // seq 105 never reaches the server
        }
        let mut wire = protect(&mut publisher.send, p);
        table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    }
    // The RTX subscriber lost 102 and 105.
    sink.clear();
    let mut buf = [0u8; 64];
    let n = rtcp::write_nack(&mut buf, 0x1, 0xB002, &[102, 105]).unwrap();
    rtcp_from(&mut table, &mut rtx_sub, &buf[..n], &mut sink);
    assert_eq!(
        sink.sent.len(),
        2,
        "one RTX to the subscriber, one NACK upstream"
    );
    let (bytes, dest) = sink.datagram(0);
    assert_eq!(dest, rtx_sub.addr);
    let mut got = bytes.to_vec();
    let len = rtx_sub.recv.unprotect_rtp(&mut got).unwrap();
    let h = rtp::parse(&got[..len]).unwrap();
    assert_eq!(
        (h.ssrc, h.payload_type),
        (0xC002, 101),
        "RTX stream of the subscriber"
    );
    assert_eq!(
        &got[h.header_len..h.header_len + 2],
        &102u16.to_be_bytes(),
        "OSN"
    );
    assert_eq!(
        &got[h.header_len + 2..len],
        &originals[2][12..],
        "original payload"
    );
    let (bytes, dest) = sink.datagram(1);
    assert_eq!(dest, publisher.addr);
    let mut got = bytes.to_vec();
    let len = publisher.recv.unprotect_rtcp(&mut got).unwrap();
    let pkt = rtcp::packets(&got[..len]).next().unwrap().unwrap();
    let RtcpKind::Nack(nack) = pkt.kind().unwrap() else {
        panic!("expected NACK upstream");
    };
    assert_eq!(nack.media_ssrc, 0xAAAA);
    assert_eq!(
        nack.lost_sequences().collect::<Vec<_>>(),
        vec![105],
        "only the server's own loss"
    );

    // The publisher answers with RTX: it is unwrapped and reaches both subscribers,
    // as RTX-less originals, and lands in the cache.
    let mut rtx = rtp(0xAAAB, 9000, 0, 97, 0);
    rtx.extend_from_slice(&105u16.to_be_bytes());
    rtx.extend_from_slice(&originals[5][12..]);
    let mut wire = protect(&mut publisher.send, &rtx);
    sink.clear();
    table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    assert_eq!(sink.sent.len(), 2);
    let (bytes, _) = sink.datagram(1);
    let mut got = bytes.to_vec();
    let len = plain_sub.recv.unprotect_rtp(&mut got).unwrap();
    let h = rtp::parse(&got[..len]).unwrap();
    assert_eq!((h.ssrc, h.sequence, h.payload_type), (0xB003, 105, 96));
    assert_eq!(&got[12..len], &originals[5][12..]);
    // A later NACK for 105 from the plain subscriber is served from the cache.
    sink.clear();
    let n = rtcp::write_nack(&mut buf, 0x1, 0xB003, &[105]).unwrap();
    rtcp_from(&mut table, &mut plain_sub, &buf[..n], &mut sink);
    assert_eq!(sink.sent.len(), 1);
    assert_eq!(sink.datagram(0).1, plain_sub.addr);
    assert_eq!(table.stats.retransmitted, 2);
}

#[test]
fn cascade_peers_get_the_publishers_packets_unchanged() {
    let (mut table, mut publisher, subs, mut sink) = setup(SrtpProfile::AeadAes128Gcm);
    let now = Instant::now();
    let relay_a = "10.7.0.1:7000".parse().unwrap();
    let relay_b = "10.7.0.2:7000".parse().unwrap();
    table.apply(
        now,
        Command::CascadeOut {
            publisher: publisher.id,
            peers: vec![relay_a, relay_b],
        },
        &mut sink,
    );
    let wire = protect(&mut publisher.send, &rtp(0xAAAA, 1, 0, 96, 800));
    sink.clear();
    table.handle_datagram(now, publisher.addr, &mut wire.clone(), &mut sink);
    assert_eq!(
        sink.sent.len(),
        2 + subs.len(),
        "two relay copies and the local fan-out"
    );
    assert_eq!(
        sink.datagram(0),
        (&wire[..], relay_a),
        "as it arrived, keys unchanged"
    );
    assert_eq!(sink.datagram(1), (&wire[..], relay_b));
    assert_eq!(table.stats.relayed, 2);
    // Emptying the set stops relaying; local subscribers keep receiving.
    table.apply(
        now,
        Command::CascadeOut {
            publisher: publisher.id,
            peers: vec![],
        },
        &mut sink,
    );
    sink.clear();
    let mut wire = protect(&mut publisher.send, &rtp(0xAAAA, 2, 0, 96, 800));
    table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    assert_eq!(sink.sent.len(), subs.len());
}

#[test]
fn a_relay_edges_nacks_are_answered_with_the_publishers_own_packets() {
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let now = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    // The edge's feedback session: its RTCP comes from its media address.
    let mut edge = peer(SessionId(9), 7000, SrtpProfile::AeadAes128Gcm);
    table.apply(now, publisher.install.clone(), &mut sink);
    table.apply(now, edge.install.clone(), &mut sink);
    table.apply(
        now,
        Command::CascadeOut {
            publisher: SessionId(1),
            peers: vec![edge.addr],
        },
        &mut sink,
    );
    table.apply(
        now,
        Command::RelayFeedback {
            relay: SessionId(9),
            publisher: SessionId(1),
            ssrcs: vec![Ssrc(0xAAAA), Ssrc(0xAAAB)],
            cached: vec![Ssrc(0xAAAA)],
        },
        &mut sink,
    );
    // No local subscriber: the packets are relayed as they arrived, and kept.
    // Start near a sequence-number wrap so resends need the right rollover counter.
    let mut wires = Vec::new();
    for i in 0..20u32 {
        let seq = (65_530 + i) as u16;
        let wire = protect(&mut publisher.send, &rtp(0xAAAA, seq, i * 3000, 96, 300));
        wires.push((seq, wire.clone()));
        table.handle_datagram(now, publisher.addr, &mut wire.clone(), &mut sink);
    }
    assert_eq!(table.stats.relayed, 20);
    // The edge lost 65534 and 3 on the relay link, and asks for 3 and an unkept 40.
    sink.clear();
    let mut buf = [0u8; 64];
    let n = rtcp::write_nack(&mut buf, 0x1, 0xAAAA, &[65_534, 3, 40]).unwrap();
    rtcp_from(&mut table, &mut edge, &buf[..n], &mut sink);
    assert_eq!(
        sink.sent.len(),
        3,
        "two resends to the edge, one NACK upstream"
    );
    for (i, seq) in [65_534u16, 3].into_iter().enumerate() {
        let (bytes, dest) = sink.datagram(i);
        assert_eq!(dest, edge.addr);
        let original = &wires.iter().find(|(s, _)| *s == seq).unwrap().1;
        assert_eq!(
            bytes,
            &original[..],
            "seq {seq}: byte for byte as the publisher sent it"
        );
    }
    let (bytes, dest) = sink.datagram(2);
    assert_eq!(dest, publisher.addr);
    let mut got = bytes.to_vec();
    let len = publisher.recv.unprotect_rtcp(&mut got).unwrap();
    let pkt = rtcp::packets(&got[..len]).next().unwrap().unwrap();
    let RtcpKind::Nack(nack) = pkt.kind().unwrap() else {
        panic!("expected NACK upstream");
    };
    assert_eq!(nack.lost_sequences().collect::<Vec<_>>(), vec![40]);
    assert_eq!(table.stats.relay_recovered, 2);
}

/// A subscriber that negotiated transport-wide sequence numbers gets them on every
/// packet, consecutive across streams, whether the publisher's packet had an
/// extension block or not; the payload is unchanged.
#[test]
fn transport_sequence_numbers_are_stamped_for_subscribers_that_negotiated_them() {
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(8);
    let now = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let mut sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    with_transport_cc(&mut sub, 5);
    table.apply(now, publisher.install.clone(), &mut sink);
    table.apply(now, sub.install.clone(), &mut sink);
    table.apply(
        now,
        route(SessionId(1), 0xAAAA, SessionId(2), 0xB002, (96, 96)),
        &mut sink,
    );
    for i in 0..4u16 {
        let mut plain = rtp(0xAAAA, 100 + i, 9000, 96, 300);
        let payload = plain[12..].to_vec();
        if i % 2 == 1 {
            // This one has a block with another element (id 1, one byte).
            plain[0] |= 0x10;
            plain.splice(12..12, [0xbe, 0xde, 0, 1, 0x10, 0x7f, 0, 0]);
        }
        let mut wire = protect(&mut publisher.send, &plain);
        sink.clear();
        table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
        assert_eq!(sink.sent.len(), 1);
        let mut got = sink.datagram(0).0.to_vec();
        let n = sub.recv.unprotect_rtp(&mut got).unwrap();
        let h = rtp::parse(&got[..n]).unwrap();
        assert_eq!(rtp::transport_seq(&got[..n], &h, 5), Some(i));
        assert_eq!(h.sequence, 100 + i);
        assert_eq!(&got[h.payload_range(n)], &payload[..], "payload unchanged");
    }
}

/// A subscriber that sends REMB instead of transport feedback: its REMB becomes its
/// estimate, reported to control once, and again only when it moves by over 10 %.
#[test]
fn remb_sets_the_estimate_reported_to_control() {
    use cascade_dataplane::command::{ExtensionIds, MediaEvent};

    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(8);
    let now = Instant::now();
    let mut sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    if let Command::InstallSession { extensions, .. } = &mut sub.install {
        *extensions = ExtensionIds {
            remb: true,
            ..Default::default()
        };
    }
    table.apply(now, sub.install.clone(), &mut sink);
    let mut buf = [0u8; 64];
    for bps in [800_000, 820_000, 500_000] {
        let n = rtcp::write_remb(&mut buf, 0x1234, bps, &[0xB002]).unwrap();
        rtcp_from(&mut table, &mut sub, &buf[..n], &mut sink);
    }
    let estimates: Vec<u64> = table
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Estimate {
                session: SessionId(2),
                bps,
            } => Some(*bps),
            _ => None,
        })
        .collect();
    assert_eq!(estimates.len(), 2, "{estimates:?}");
    assert!(estimates[0].abs_diff(800_000) < 10_000 && estimates[1].abs_diff(500_000) < 10_000);
}

/// Two workers' replicas of one simulcast subscriber stream, sharing one home map:
/// worker A receives the layers and forwards the stream, worker B reads the
/// subscriber's NACK. B hands it to A, which answers as RTX from the forwarded layer's
/// cache. Before any media, no worker is home and B (forwarding nothing) asks nothing.
#[test]
fn a_layered_streams_nack_on_another_worker_is_handed_to_the_forwarding_one() {
    use cascade_dataplane::handoff::Homes;
    use std::sync::Arc;

    let now = Instant::now();
    let homes = Arc::new(Homes::default());
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let mut sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    let mut sink = RecordingSink::with_capacity(8);
    let mut a = ForwardingTable::with_homes(0, homes.clone());
    let mut b = ForwardingTable::with_homes(1, homes.clone());
    for t in [&mut a, &mut b] {
        t.apply(now, publisher.install.clone(), &mut sink);
        t.apply(now, sub.install.clone(), &mut sink);
        route_two_layers(t, now, &mut sink);
    }
    // No media yet: B's rewriter forwards no layer and no worker is home.
    let mut buf = [0u8; 64];
    let n = rtcp::write_nack(&mut buf, 0x1, 0xB002, &[10, 11]).unwrap();
    sink.clear();
    rtcp_from(&mut b, &mut sub, &buf[..n], &mut sink);
    assert!(sink.sent.is_empty(), "nothing to answer or ask for");
    assert!(b.handoffs.is_empty());
    // Worker A forwards layer 0xAAAA from its keyframe at 1000 on.
    let sent = forward_layer_run(&mut a, &mut publisher, &mut sub, now, &mut sink);
    assert_eq!(homes.get(0, SessionId(1)), Some(0));
    // The subscriber lost the fourth and the eighth; its NACK reaches worker B, which
    // hands it over and sends nothing.
    let n = rtcp::write_nack(&mut buf, 0x1, 0xB002, &[sent[3].0, sent[7].0]).unwrap();
    sink.clear();
    rtcp_from(&mut b, &mut sub, &buf[..n], &mut sink);
    assert!(sink.sent.is_empty(), "B neither answers nor asks upstream");
    assert_eq!(b.handoffs.len(), 1);
    let (to, h) = b.handoffs.pop().unwrap();
    assert_eq!(to, 0);
    assert_eq!(h.seqs(), &[sent[3].0, sent[7].0]);
    // A answers from the forwarded layer's cache.
    a.handle_handoff(now, &h, &mut sink);
    assert_rtx_answers(&sink, &mut sub, &sent, [3, 7]);
    assert!(
        a.handoffs.is_empty(),
        "an answered hand-off is not handed on"
    );
}

#[test]
fn a_layered_streams_nacks_are_answered_from_the_layers_cache() {
    let now = Instant::now();
    let (mut table, mut publisher, mut sub, mut sink) = two_layer_table(now);
    table.apply(
        now,
        Command::SelectLayer {
            subscriber: SessionId(2),
            subscriber_ssrc: Ssrc(0xB002),
            layer: Some(Ssrc(0xAAAA)),
        },
        &mut sink,
    );
    let sent = forward_layer_run(&mut table, &mut publisher, &mut sub, now, &mut sink);
    // The subscriber lost the fourth and the eighth.
    let mut buf = [0u8; 64];
    let n = rtcp::write_nack(&mut buf, 0x1, 0xB002, &[sent[3].0, sent[7].0]).unwrap();
    sink.clear();
    rtcp_from(&mut table, &mut sub, &buf[..n], &mut sink);
    assert_rtx_answers(&sink, &mut sub, &sent, [3, 7]);
}

#[test]
fn a_paused_subscriber_is_still_probed_so_it_can_resume() {
    use cascade_dataplane::command::KeyframeFormat;

    let now = Instant::now();
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let mut sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    with_transport_cc(&mut sub, 3);
    table.apply(now, publisher.install.clone(), &mut sink);
    table.apply(now, sub.install.clone(), &mut sink);
    let Command::Route(mut r) = route_rtx(
        SessionId(1),
        0xAAAA,
        SessionId(2),
        0xB002,
        (96, 96),
        None,
        Some((0xC002, 97)),
    ) else {
        unreachable!()
    };
    r.layered = Some(KeyframeFormat::Vp8);
    table.apply(now, Command::Route(r), &mut sink);
    // No layer fits: paused. The estimate is probed all the same.
    table.apply(
        now,
        Command::SelectLayer {
            subscriber: SessionId(2),
            subscriber_ssrc: Ssrc(0xB002),
            layer: None,
        },
        &mut sink,
    );
    table.apply(
        now,
        Command::Probe {
            subscriber: SessionId(2),
            bps: 1_000_000,
        },
        &mut sink,
    );
    sink.clear();
    let mut at = now;
    for _ in 0..5 {
        at += Duration::from_millis(10);
        table.handle_timeout(at, &mut sink);
    }
    let padding: Vec<_> = (0..sink.sent.len())
        .filter_map(|i| {
            let (bytes, dest) = sink.datagram(i);
            let mut got = bytes.to_vec();
            let len = sub.recv.unprotect_rtp(&mut got).ok()?;
            let h = rtp::parse(&got[..len]).ok()?;
            (dest == sub.addr).then_some((h.ssrc, h.payload_type, len))
        })
        .collect();
    assert!(
        padding.len() >= 5,
        "padding to the paused subscriber: {padding:?}"
    );
    assert!(
        padding.iter().all(|p| (p.0, p.1) == (0xC002, 97)),
        "on its RTX stream: {padding:?}"
    );
}

/// Two VP8 layers (0xAAAA, 0xAAAC, with RTX) of publisher 1 routed through subscriber
/// 2's layer switch onto 0xB002 (RTX 0xC002).
fn route_two_layers(t: &mut ForwardingTable, now: Instant, sink: &mut RecordingSink) {
    use cascade_dataplane::command::KeyframeFormat;
    for layer in [0xAAAA, 0xAAAC] {
        let Command::Route(mut r) = route_rtx(
            SessionId(1),
            layer,
            SessionId(2),
            0xB002,
            (96, 96),
            Some((layer + 1, 97)),
            Some((0xC002, 97)),
        ) else {
            unreachable!()
        };
        r.layered = Some(KeyframeFormat::Vp8);
        t.apply(now, Command::Route(r), sink);
    }
}

/// One table with publisher 1 and subscriber 2, two layers routed as in
/// [`route_two_layers`].
fn two_layer_table(now: Instant) -> (ForwardingTable, Peer, Peer, RecordingSink) {
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(8);
    let publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    table.apply(now, publisher.install.clone(), &mut sink);
    table.apply(now, sub.install.clone(), &mut sink);
    route_two_layers(&mut table, now, &mut sink);
    (table, publisher, sub, sink)
}

/// Ten packets of layer 0xAAAA from a keyframe at 1000 on, each forwarded once to
/// `sub`: what it got (outbound sequence number, payload).
fn forward_layer_run(
    t: &mut ForwardingTable,
    publisher: &mut Peer,
    sub: &mut Peer,
    now: Instant,
    sink: &mut RecordingSink,
) -> Vec<(u16, Vec<u8>)> {
    let mut sent = Vec::new();
    for seq in 1000u16..1010 {
        let mut plain = rtp(0xAAAA, seq, 3000, 96, 0);
        if seq == 1000 {
            plain.extend([
                0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
            ]);
        } else {
            plain.extend([0x10, 0x01, 0x00, 0x00]);
        }
        plain.resize(300, seq as u8);
        let mut wire = protect(&mut publisher.send, &plain);
        sink.clear();
        t.handle_datagram(now, publisher.addr, &mut wire, sink);
        assert_eq!(sink.sent.len(), 1, "forwarded");
        let mut got = sink.datagram(0).0.to_vec();
        let len = sub.recv.unprotect_rtp(&mut got).unwrap();
        let h = rtp::parse(&got[..len]).unwrap();
        sent.push((h.sequence, got[h.header_len..len].to_vec()));
    }
    sent
}

/// `sink` holds exactly the RTX answers to the packets of `sent` at `lost`.
fn assert_rtx_answers(
    sink: &RecordingSink,
    sub: &mut Peer,
    sent: &[(u16, Vec<u8>)],
    lost: [usize; 2],
) {
    assert_eq!(sink.sent.len(), 2, "two retransmissions, nothing upstream");
    for (i, lost) in lost.into_iter().enumerate() {
        let (bytes, dest) = sink.datagram(i);
        assert_eq!(dest, sub.addr);
        let mut got = bytes.to_vec();
        let len = sub.recv.unprotect_rtp(&mut got).unwrap();
        let h = rtp::parse(&got[..len]).unwrap();
        assert_eq!((h.ssrc, h.payload_type), (0xC002, 97), "as RTX");
        let body = &got[h.header_len..len];
        assert_eq!(&body[..2], &sent[lost].0.to_be_bytes(), "OSN");
        assert_eq!(&body[2..], &sent[lost].1[..], "the original payload");
    }
}

#[test]
fn a_vp8_streams_picture_ids_go_on_across_a_layer_switch() {
    let now = Instant::now();
    let (mut table, mut publisher, mut sub, mut sink) = two_layer_table(now);
    let mut commands = RecordingSink::with_capacity(8);
    let mut select = |table: &mut ForwardingTable, layer| {
        table.apply(
            now,
            Command::SelectLayer {
                subscriber: SessionId(2),
                subscriber_ssrc: Ssrc(0xB002),
                layer: Some(layer),
            },
            &mut commands,
        );
    };
    // A VP8 packet with a 15-bit PictureID and a TL0PICIDX, a keyframe start or not;
    // what the subscriber got: (sequence number, PictureID, TL0PICIDX), if anything.
    let mut send = |table: &mut ForwardingTable, ssrc, seq: u16, pid: u16, tl0: u8, key: bool| {
        let mut plain = rtp(ssrc, seq, u32::from(seq) * 3000, 96, 0);
        plain.extend([
            if key { 0x90 } else { 0x80 },
            0xc0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
        ]);
        if key {
            plain.extend([0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        } else {
            plain.extend([0x01, 0x00, 0x00]);
        }
        let mut wire = protect(&mut publisher.send, &plain);
        sink.clear();
        table.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
        // A keyframe request may go to the publisher; the media goes to the subscriber.
        (0..sink.sent.len())
            .find(|&i| sink.datagram(i).1 == sub.addr)
            .map(|i| {
                let mut got = sink.datagram(i).0.to_vec();
                let len = sub.recv.unprotect_rtp(&mut got).unwrap();
                let h = rtp::parse(&got[..len]).unwrap();
                let p = &got[h.payload_range(len)];
                (h.sequence, u16::from_be_bytes([p[2] & 0x7f, p[3]]), p[4])
            })
    };
    select(&mut table, Ssrc(0xAAAA));
    let mut got = Vec::new();
    for i in 0..3u16 {
        got.extend(send(&mut table, 0xAAAA, 1000 + i, 100 + i, 7, i == 0));
    }
    select(&mut table, Ssrc(0xAAAC));
    // Layer 0xAAAC numbers its pictures on its own; it starts at its keyframe.
    assert_eq!(send(&mut table, 0xAAAC, 50, 20_000, 200, false), None);
    for i in 0..3u16 {
        got.extend(send(&mut table, 0xAAAC, 51 + i, 20_001 + i, 201, i == 0));
    }
    let pids: Vec<u16> = got.iter().map(|g| g.1).collect();
    let tl0s: Vec<u8> = got.iter().map(|g| g.2).collect();
    assert_eq!(pids, vec![100, 101, 102, 103, 104, 105], "{got:?}");
    assert_eq!(tl0s, vec![7, 7, 7, 8, 8, 8], "{got:?}");
    let seqs: Vec<u16> = got.iter().map(|g| g.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );
}
