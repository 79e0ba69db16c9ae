//! Cascade copies leave only after the packet authenticated: a forgery from a relayed
//! publisher's address (a bad tag, a replay) is dropped once, not multiplied by the
//! number of cascade peers.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use cascade_dataplane::command::Command;
use cascade_dataplane::srtp::SrtpProfile;
use cascade_dataplane::stats::DropReason;
use cascade_dataplane::table::{Disposition, ForwardingTable};
use common::*;

#[test]
fn a_forged_packet_from_the_publishers_address_is_not_copied_to_cascade_peers() {
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let now = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let sub = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    table.apply(now, publisher.install.clone(), &mut sink);
    table.apply(now, sub.install.clone(), &mut sink);
    table.apply(
        now,
        route(SessionId(1), 0xAAAA, SessionId(2), 0xB002, (96, 96)),
        &mut sink,
    );
    let edges: Vec<SocketAddr> = (1..=8)
        .map(|i| SocketAddr::from(([10, 7, 0, i], 7000)))
        .collect();
    table.apply(
        now,
        Command::CascadeOut {
            publisher: publisher.id,
            peers: edges.clone(),
        },
        &mut sink,
    );

    // SRTP with a bad tag, SRTCP with a bad tag, from the publisher's address.
    let genuine = protect(&mut publisher.send, &rtp(0xAAAA, 1, 0, 96, 800));
    let mut forged = genuine.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x55;
    let sr = [
        0x80, 200, 0, 6, 0, 0, 0xAA, 0xAA, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0,
        5,
    ];
    let mut srtcp = vec![0u8; sr.len() + 32];
    srtcp[..sr.len()].copy_from_slice(&sr);
    let n = publisher.send.protect_rtcp(&mut srtcp, sr.len()).unwrap();
    srtcp.truncate(n);
    let mut forged_rtcp = srtcp.clone();
    forged_rtcp[n - 1] ^= 0x55;
    for bad in [&forged, &forged_rtcp] {
        sink.clear();
        let d = table.handle_datagram(now, publisher.addr, &mut bad.clone(), &mut sink);
        assert_eq!(d, Disposition::Dropped(DropReason::AuthFailed));
        assert!(sink.sent.is_empty(), "nothing copied: {:?}", sink.sent);
    }
    assert_eq!(table.stats.relayed, 0);

    // The genuine packets go to every edge as they arrived, and to the subscriber.
    sink.clear();
    table.handle_datagram(now, publisher.addr, &mut genuine.clone(), &mut sink);
    assert_eq!(sink.sent.len(), edges.len() + 1);
    for (i, edge) in edges.iter().enumerate() {
        assert_eq!(sink.datagram(i), (&genuine[..], *edge), "unchanged");
    }
    sink.clear();
    table.handle_datagram(now, publisher.addr, &mut srtcp.clone(), &mut sink);
    let copies: Vec<_> = (0..sink.sent.len()).map(|i| sink.datagram(i)).collect();
    for edge in &edges {
        assert!(
            copies.contains(&(&srtcp[..], *edge)),
            "SRTCP copied to {edge}"
        );
    }

    // A replay of the genuine packet is not copied again either.
    sink.clear();
    let d = table.handle_datagram(now, publisher.addr, &mut genuine.clone(), &mut sink);
    assert_eq!(d, Disposition::Dropped(DropReason::Replayed));
    assert!(sink.sent.is_empty());
    assert_eq!(table.stats.relayed, 2 * edges.len() as u64);
}
