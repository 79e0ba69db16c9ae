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
    let publisher = peer(1, 5000, profile);
    let subs: Vec<Peer> = (2..5).map(|i| peer(i, 6000 + i as u16, profile)).collect();
    assert!(table.apply(now, publisher.install.clone(), &mut sink));
    for s in &subs {
        table.apply(now, s.install.clone(), &mut sink);
        table.apply(
            now,
            route(1, 0xAAAA, s.id, 0xB000 + s.id as u32, (96, 100)),
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
                assert_eq!(h.ssrc, 0xB000 + s.id as u32);
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
            let n = rtcp::write_pli(&mut buf, 0x1234, 0xB000 + sub.id as u32).unwrap();
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
