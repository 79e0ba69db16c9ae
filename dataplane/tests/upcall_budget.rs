//! The upcall budget in the forwarding table: a flood of STUN/DTLS-looking datagrams
//! from many unknown sources is cut to the budget before it reaches control, while a
//! validated session's STUN, DTLS and media all pass, and the cut is counted.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_dataplane::budget::UpcallBudgetConfig;
use cascade_dataplane::command::Command;
use cascade_dataplane::srtp::SrtpProfile;
use cascade_dataplane::stats::DropReason;
use cascade_dataplane::table::{Disposition, ForwardingTable};
use common::*;

/// A STUN Binding request header (20 bytes, magic cookie) with a `tag` in its
/// transaction id.
fn stun(tag: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[1] = 0x01;
    b[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    b[8..12].copy_from_slice(&tag.to_be_bytes());
    b
}

/// The start of a DTLS ClientHello record.
fn dtls() -> [u8; 25] {
    let mut b = [0u8; 25];
    b[0] = 22;
    b[1] = 0xfe;
    b[2] = 0xfd;
    b
}

fn unknown(i: u32) -> SocketAddr {
    SocketAddr::from((
        [172, 16, (i >> 8) as u8, i as u8],
        30_000 + (i % 500) as u16,
    ))
}

#[test]
fn a_flood_from_unknown_sources_is_cut_to_the_budget_and_validated_peers_all_pass() {
    let config = UpcallBudgetConfig {
        per_source_rate: 20,
        per_source_burst: 40,
        per_address_rate: 100,
        per_address_burst: 200,
        global_rate: 2000,
        global_burst: 2000,
    };
    let mut table = ForwardingTable::new(0);
    table.set_upcall_budget(config);
    let mut sink = RecordingSink::with_capacity(64);
    let start = Instant::now();
    // A publisher and a subscriber with a route: a session that forwards media.
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let subscriber = peer(SessionId(2), 6000, SrtpProfile::AeadAes128Gcm);
    table.apply(start, publisher.install.clone(), &mut sink);
    table.apply(start, subscriber.install.clone(), &mut sink);
    table.apply(
        start,
        route(SessionId(1), 0xAAAA, SessionId(2), 0xB002, (96, 96)),
        &mut sink,
    );
    // A third session whose ICE check passed and whose DTLS handshake is under way:
    // validated, not installed.
    let handshaking: SocketAddr = "10.0.0.3:7000".parse().unwrap();
    table.apply(
        start,
        Command::PeerValidated {
            id: SessionId(3),
            peer: handshaking,
        },
        &mut sink,
    );

    // One second of flood: 2,000 unknown sources, each sending 25 STUN and 25 DTLS
    // datagrams (100,000 in all), interleaved with the sessions' own traffic.
    let sources = 2000u32;
    let (mut flood_up, mut flood_sent) = (0u64, 0u64);
    let (mut own_up, mut own_sent, mut media_sent) = (0u64, 0u64, 0usize);
    let mut forwarded = 0;
    for step in 0..50u32 {
        let now = start + Duration::from_millis(u64::from(step) * 20);
        for i in 0..sources {
            let d = if step % 2 == 0 {
                table.handle_datagram(now, unknown(i), &mut stun(i), &mut sink)
            } else {
                table.handle_datagram(now, unknown(i), &mut dtls(), &mut sink)
            };
            flood_sent += 1;
            match d {
                Disposition::ToControl => flood_up += 1,
                Disposition::Dropped(DropReason::UpcallBudget) => {}
                other => panic!("flood datagram: {other:?}"),
            }
        }
        // Consent checks of the installed sessions, DTLS of the validated one.
        for (from, datagram) in [
            (publisher.addr, &mut stun(1)[..]),
            (subscriber.addr, &mut stun(2)[..]),
            (handshaking, &mut dtls()[..]),
        ] {
            own_sent += 1;
            if table.handle_datagram(now, from, datagram, &mut sink) == Disposition::ToControl {
                own_up += 1;
            }
        }
        // And media, forwarded to the subscriber.
        sink.clear();
        let mut wire = protect(
            &mut publisher.send,
            &rtp(0xAAAA, step as u16, step * 3000, 96, 800),
        );
        assert_eq!(
            table.handle_datagram(now, publisher.addr, &mut wire, &mut sink),
            Disposition::Handled
        );
        media_sent += 1;
        forwarded += sink.sent.len();
    }
    // The flood got at most the global burst plus a second of the global rate.
    let ceiling = u64::from(config.global_burst + config.global_rate);
    eprintln!("flood: {flood_up} of {flood_sent} went up to control (ceiling {ceiling})");
    assert!(flood_up <= ceiling, "{flood_up} > {ceiling}");
    assert!(flood_up > 0, "unknown sources may still start sessions");
    assert_eq!(own_up, own_sent, "validated peers are never charged");
    assert_eq!(forwarded, media_sent, "every media packet was forwarded");
    assert_eq!(
        table.stats.drops[DropReason::UpcallBudget as usize],
        flood_sent - flood_up,
        "every cut datagram is counted"
    );

    // A source flooding alone gets its own burst and rate, not the global budget.
    let mut table = ForwardingTable::new(0);
    table.set_upcall_budget(config);
    let loud = unknown(9);
    let up = (0..10_000u32)
        .filter(|&i| {
            let now = start + Duration::from_micros(u64::from(i) * 100);
            table.handle_datagram(now, loud, &mut stun(i), &mut sink) == Disposition::ToControl
        })
        .count() as u32;
    // 10,000 datagrams over one second: the burst and 20 more.
    assert!(
        up <= config.per_source_burst + config.per_source_rate + 1,
        "{up}"
    );
    assert!(up >= config.per_source_burst, "{up}");

    // Revoked, the handshaking address is charged like any other.
    let mut table = ForwardingTable::new(0);
    table.set_upcall_budget(UpcallBudgetConfig {
        per_source_rate: 0,
        per_source_burst: 1,
        ..config
    });
    let validated = Command::PeerValidated {
        id: SessionId(3),
        peer: handshaking,
    };
    table.apply(start, validated, &mut sink);
    for _ in 0..10 {
        assert_eq!(
            table.handle_datagram(start, handshaking, &mut dtls(), &mut sink),
            Disposition::ToControl
        );
    }
    table.apply(
        start,
        Command::PeerRevoked {
            id: SessionId(3),
            peer: handshaking,
        },
        &mut sink,
    );
    let up = (0..10)
        .filter(|_| {
            table.handle_datagram(start, handshaking, &mut dtls(), &mut sink)
                == Disposition::ToControl
        })
        .count();
    assert_eq!(up, 1, "one token, then the budget");
}

#[test]
fn one_host_flooding_from_many_ports_leaves_the_budget_to_new_peers_elsewhere() {
    let config = UpcallBudgetConfig::default();
    let mut table = ForwardingTable::new(0);
    table.set_upcall_budget(config);
    let mut sink = RecordingSink::with_capacity(8);
    let start = Instant::now();
    // One host sends from 8,000 ports, 5 datagrams each, over half a second: each
    // port stays within its own source budget, so only a budget per address sees it.
    let host = |port: u16| SocketAddr::from(([203, 0, 113, 7], port));
    // Meanwhile a browser elsewhere starts its session: two checks after each round.
    let newcomer: SocketAddr = "198.51.100.20:50000".parse().unwrap();
    let (mut sent, mut up, mut newcomer_up) = (0u32, 0u32, 0u32);
    for round in 0..5u32 {
        let now = start + Duration::from_millis(u64::from(round) * 100);
        for port in 20_000..28_000u16 {
            sent += 1;
            if table.handle_datagram(now, host(port), &mut stun(sent), &mut sink)
                == Disposition::ToControl
            {
                up += 1;
            }
        }
        for i in 0..2 {
            if table.handle_datagram(
                now,
                newcomer,
                &mut stun(1_000_000 + round * 2 + i),
                &mut sink,
            ) == Disposition::ToControl
            {
                newcomer_up += 1;
            }
        }
    }
    // The address's burst and half a second of its rate.
    let ceiling = config.per_address_burst + config.per_address_rate / 2 + 1;
    eprintln!("one host, 8,000 ports: {up} of {sent} went up (ceiling {ceiling})");
    assert!(up <= ceiling, "{up} > {ceiling}");
    assert_eq!(newcomer_up, 10, "the newcomer's checks that went up");
}
