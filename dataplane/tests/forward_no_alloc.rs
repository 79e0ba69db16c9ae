//! Proves the forwarding path allocates nothing per packet once warm: a counting
//! global allocator wraps the system one, and 10,000 SRTP packets are forwarded to
//! three subscribers after the first packet of the stream; then the same with two
//! simulcast layers, transport-wide congestion control and probes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cascade_dataplane::srtp::SrtpProfile;
use cascade_dataplane::table::ForwardingTable;
use common::*;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn zero_allocations_per_forwarded_packet() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let mut table = ForwardingTable::new(0);
        let mut sink = RecordingSink::with_capacity(8);
        let now = Instant::now();
        let mut publisher = peer(SessionId(1), 5000, profile);
        table.apply(now, publisher.install.clone(), &mut sink);
        for id in (2..5).map(SessionId) {
            let s = peer(id, 6000, profile);
            table.apply(now, s.install.clone(), &mut sink);
            table.apply(
                now,
                route(SessionId(1), 0xAAAA, id, 0xB000 + id.0 as u32, (96, 96)),
                &mut sink,
            );
        }
        // Pre-protect every packet so the measured loop only forwards.
        let mut wires: Vec<Vec<u8>> = (0..10_001u32)
            .map(|i| {
                protect(
                    &mut publisher.send,
                    &rtp(0xAAAA, i as u16, i * 3000, 96, 1100),
                )
            })
            .collect();
        // Warm-up: the first packet of the stream sets up per-SSRC state.
        table.handle_datagram(now, publisher.addr, &mut wires[0], &mut sink);
        sink.clear();
        let before = ALLOCS.load(Ordering::Relaxed);
        let mut forwarded = 0;
        for w in wires.iter_mut().skip(1) {
            table.handle_datagram(now, publisher.addr, w, &mut sink);
            forwarded += sink.sent.len();
            sink.clear();
        }
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(
            forwarded, 30_000,
            "{profile:?}: every packet forwarded to 3 subscribers"
        );
        assert_eq!(
            allocs, 0,
            "{profile:?}: {allocs} allocations for {forwarded} forwarded packets"
        );
    }
}

/// A plaintext VP8 packet with a transport-wide sequence number (extension id 3): a
/// keyframe start when `key`.
fn vp8_with_tseq(ssrc: u32, seq: u16, ts: u32, tseq: u16, key: bool) -> Vec<u8> {
    let mut p = vec![0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend([0xbe, 0xde, 0, 1, 0x31, (tseq >> 8) as u8, tseq as u8, 0]);
    if key {
        p.extend([
            0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ]);
    } else {
        p.extend([0x10, 0x01, 0x00, 0x00]);
    }
    p.resize(p.len() + 1000, 0x55);
    p
}

/// The media-quality paths allocate nothing either: two simulcast layers on layered
/// routes (rewriting, a layer switch at a keyframe), transport feedback recorded for
/// the publisher and sent by the timer, transport sequence numbers stamped for the
/// subscribers, whose feedback feeds their estimators, and probe padding.
#[test]
fn zero_allocations_with_layers_and_congestion_control() {
    use cascade_dataplane::command::{ExtensionIds, KeyframeFormat};
    use cascade_dataplane::twcc::TwccRecorder;
    use std::time::Duration;

    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let profile = SrtpProfile::AeadAes128Gcm;
    let ext = ExtensionIds {
        transport_cc: 3,
        ..Default::default()
    };
    let with_ext = |p: &mut common::Peer| {
        if let cascade_dataplane::command::Command::InstallSession { extensions, .. } =
            &mut p.install
        {
            *extensions = ext;
        }
    };
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let start = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, profile);
    with_ext(&mut publisher);
    table.apply(start, publisher.install.clone(), &mut sink);
    let mut subscribers = Vec::new();
    for id in (2..4).map(SessionId) {
        let mut s = peer(id, 6000, profile);
        with_ext(&mut s);
        table.apply(start, s.install.clone(), &mut sink);
        for layer in [0xAAAA, 0xAAAB] {
            let cascade_dataplane::command::Command::Route(mut r) = route_rtx(
                SessionId(1),
                layer,
                id,
                0xB000 + id.0 as u32,
                (96, 96),
                None,
                Some((0xC000 + id.0 as u32, 97)),
            ) else {
                unreachable!()
            };
            r.layered = Some(KeyframeFormat::Vp8);
            table.apply(
                start,
                cascade_dataplane::command::Command::Route(r),
                &mut sink,
            );
        }
        table.apply(
            start,
            cascade_dataplane::command::Command::Probe {
                subscriber: id,
                bps: 2_000_000,
            },
            &mut sink,
        );
        subscribers.push(s);
    }
    // 5,000 packets per layer, alternating; a keyframe every 500 packets per layer.
    let n = 5_000u32;
    let mut wires: Vec<Vec<u8>> = (0..2 * n)
        .map(|i| {
            let layer = if i % 2 == 0 { 0xAAAA } else { 0xAAAB };
            let k = i / 2;
            protect(
                &mut publisher.send,
                &vp8_with_tseq(layer, k as u16, k * 3000, i as u16, k % 500 == 0),
            )
        })
        .collect();
    // Transport feedback from each subscriber, one per 50 packets it got.
    let mut feedback: Vec<Vec<Vec<u8>>> = subscribers
        .iter_mut()
        .map(|s| {
            let mut rec = TwccRecorder::new();
            let mut out = Vec::new();
            for chunk in 0..(n / 50) {
                for seq in chunk * 50..(chunk + 1) * 50 {
                    rec.record(seq as u16, u64::from(seq) * 1000);
                }
                let mut buf = vec![0u8; 1500];
                let len = rec
                    .build_feedback(&mut buf, 0x7777 + s.id.0 as u32, 0xB000 + s.id.0 as u32)
                    .unwrap()
                    .unwrap();
                let n = s.send.protect_rtcp(&mut buf, len).unwrap();
                buf.truncate(n);
                out.push(buf);
            }
            out
        })
        .collect();
    let select = cascade_dataplane::command::Command::SelectLayer {
        subscriber: SessionId(2),
        subscriber_ssrc: Ssrc(0xB002),
        layer: Some(Ssrc(0xAAAB)),
    };
    // Warm-up: the first packet of each layer sets up per-SSRC state.
    for w in wires.iter_mut().take(2) {
        table.handle_datagram(start, publisher.addr, w, &mut sink);
        sink.clear();
    }
    table.events.clear();
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut forwarded = 0;
    let mut fb_next = [0usize; 2];
    for (i, w) in wires.iter_mut().enumerate().skip(2) {
        let now = start + Duration::from_millis(i as u64);
        if i == 4_001 {
            table.apply(now, select.clone(), &mut sink);
        }
        table.handle_datagram(now, publisher.addr, w, &mut sink);
        forwarded += sink.sent.len();
        sink.clear();
        if i % 100 == 0 {
            for (k, s) in subscribers.iter().enumerate() {
                if let Some(f) = feedback[k].get_mut(fb_next[k]) {
                    table.handle_datagram(now, s.addr, f, &mut sink);
                    fb_next[k] += 1;
                    sink.clear();
                }
            }
        }
        if table.poll_timeout().is_some_and(|t| t <= now) {
            table.handle_timeout(now, &mut sink);
            sink.clear();
        }
        table.events.clear();
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(forwarded > 9_000, "layers forwarded: {forwarded}");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations for {forwarded} packets with layers and congestion control"
    );
}

/// The checks hostile input meets allocate nothing either: the upcall budget for STUN
/// and DTLS from 10,000 unknown sources (and none for validated peers), and cascade
/// copies that wait for authentication (forgeries included), interleaved with
/// forwarding; NACKs that repeat sequence numbers, answered from the cache.
#[test]
fn zero_allocations_for_the_upcall_budget_and_authenticated_relaying() {
    use cascade_dataplane::command::Command;
    use cascade_dataplane::table::Disposition;
    use std::net::SocketAddr;
    use std::time::Duration;

    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let profile = SrtpProfile::AeadAes128Gcm;
    let mut table = ForwardingTable::new(0);
    let mut sink = RecordingSink::with_capacity(64);
    let start = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, profile);
    let mut sub = peer(SessionId(2), 6000, profile);
    table.apply(start, publisher.install.clone(), &mut sink);
    table.apply(start, sub.install.clone(), &mut sink);
    table.apply(
        start,
        route(SessionId(1), 0xAAAA, SessionId(2), 0xB002, (96, 96)),
        &mut sink,
    );
    let edges: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from(([10, 7, 0, i], 7000)))
        .collect();
    table.apply(
        start,
        Command::CascadeOut {
            publisher: publisher.id,
            peers: edges,
        },
        &mut sink,
    );
    let n = 5_000u32;
    let mut wires: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            protect(
                &mut publisher.send,
                &rtp(0xAAAA, i as u16, i * 3000, 96, 1000),
            )
        })
        .collect();
    let mut forged = wires[1].clone();
    *forged.last_mut().unwrap() ^= 1;
    let sources: Vec<SocketAddr> = (0..10_000u32)
        .map(|i| SocketAddr::from(([172, 16, (i >> 8) as u8, i as u8], 30_000)))
        .collect();
    let mut stun = [0u8; 20];
    stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    // A NACK naming sequence numbers 10..=26 a hundred times over.
    let mut nack = vec![0x81, 0xcd, 0, 0, 0, 0, 0, 1, 0, 0, 0xb0, 0x02];
    for _ in 0..100 {
        nack.extend_from_slice(&[0, 10, 0xff, 0xff]);
    }
    let words = (nack.len() / 4 - 1) as u16;
    nack[2..4].copy_from_slice(&words.to_be_bytes());
    let mut nacks: Vec<Vec<u8>> = (0..n / 100)
        .map(|_| {
            let mut buf = vec![0u8; nack.len() + 32];
            buf[..nack.len()].copy_from_slice(&nack);
            let len = sub.send.protect_rtcp(&mut buf, nack.len()).unwrap();
            buf.truncate(len);
            buf
        })
        .collect();
    let mut scratch = [0u8; 2048];
    table.handle_datagram(start, publisher.addr, &mut wires[0], &mut sink);
    sink.clear();
    let before = ALLOCS.load(Ordering::Relaxed);
    let (mut forwarded, mut up, mut cut) = (0, 0, 0);
    for (i, w) in wires.iter_mut().enumerate().skip(1) {
        let now = start + Duration::from_micros(i as u64 * 200);
        table.handle_datagram(now, publisher.addr, w, &mut sink);
        forwarded += sink.sent.len();
        sink.clear();
        scratch[..forged.len()].copy_from_slice(&forged);
        table.handle_datagram(now, publisher.addr, &mut scratch[..forged.len()], &mut sink);
        assert!(sink.sent.is_empty());
        for k in 0..2 {
            let from = sources[(2 * i + k) % sources.len()];
            match table.handle_datagram(now, from, &mut stun, &mut sink) {
                Disposition::ToControl => up += 1,
                _ => cut += 1,
            }
        }
        assert_eq!(
            table.handle_datagram(now, sub.addr, &mut stun, &mut sink),
            Disposition::ToControl
        );
        if i % 100 == 0 {
            table.handle_datagram(now, sub.addr, &mut nacks[i / 100 - 1], &mut sink);
            sink.clear();
        }
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(
        forwarded,
        4 * (n as usize - 1),
        "3 edges and the subscriber"
    );
    assert!(up > 0 && cut > 0, "{up} up, {cut} cut");
    assert_eq!(allocs, 0, "{allocs} allocations");
}
