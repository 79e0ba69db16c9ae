//! Two workers' tables sharing one home map: a subscriber's NACK that lands on the
//! worker without the publisher's media is handed to the worker that has it, which
//! answers from its cache; without the hand-off it would go upstream unanswered.
//! Handing over and answering allocate nothing (a counting allocator checks).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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

use cascade_dataplane::handoff::Homes;
use cascade_dataplane::rtcp;
use cascade_dataplane::rtp;
use cascade_dataplane::srtp::SrtpProfile;
use cascade_dataplane::table::ForwardingTable;
use common::*;

#[test]
fn a_nack_on_the_wrong_worker_is_answered_by_the_publishers_worker() {
    let homes = Arc::new(Homes::default());
    let mut a = ForwardingTable::with_homes(0, homes.clone());
    let mut b = ForwardingTable::with_homes(1, homes.clone());
    let mut sink = RecordingSink::with_capacity(64);
    let now = Instant::now();
    let mut publisher = peer(SessionId(1), 5000, SrtpProfile::AeadAes128Gcm);
    let mut subscriber = peer(SessionId(2), 6002, SrtpProfile::AeadAes128Gcm);
    for t in [&mut a, &mut b] {
        t.apply(now, publisher.install.clone(), &mut sink);
        t.apply(now, subscriber.install.clone(), &mut sink);
        t.apply(
            now,
            route(SessionId(1), 0xAAAA, SessionId(2), 0xB002, (96, 96)),
            &mut sink,
        );
    }
    // The publisher's media reaches worker A only.
    for seq in 100u16..110 {
        let mut wire = protect(&mut publisher.send, &rtp(0xAAAA, seq, 0, 96, 300));
        a.handle_datagram(now, publisher.addr, &mut wire, &mut sink);
    }
    assert_eq!(homes.get(0, SessionId(1)), Some(0));
    // The subscriber's NACK reaches worker B: B hands it over and sends nothing.
    sink.clear();
    let mut buf = [0u8; 64];
    let n = rtcp::write_nack(&mut buf, 0x1, 0xB002, &[103, 107]).unwrap();
    let mut wire = buf[..n].to_vec();
    wire.resize(n + 32, 0);
    let m = subscriber.send.protect_rtcp(&mut wire, n).unwrap();
    wire.truncate(m);
    let before = ALLOCS.load(Ordering::Relaxed);
    b.handle_datagram(now, subscriber.addr, &mut wire, &mut sink);
    assert!(sink.sent.is_empty(), "B neither answers nor asks upstream");
    assert_eq!(b.handoffs.len(), 1);
    let (to, h) = b.handoffs.pop().unwrap();
    assert_eq!(to, 0);
    assert_eq!(h.seqs(), &[103, 107]);
    // A answers from its cache.
    a.handle_handoff(now, &h, &mut sink);
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0, "no allocation");
    assert_eq!(sink.sent.len(), 2);
    for (i, seq) in [103u16, 107].into_iter().enumerate() {
        let (bytes, dest) = sink.datagram(i);
        assert_eq!(dest, subscriber.addr);
        let mut got = bytes.to_vec();
        let len = subscriber.recv.unprotect_rtp(&mut got).unwrap();
        let h = rtp::parse(&got[..len]).unwrap();
        assert_eq!((h.ssrc, h.sequence), (0xB002, seq));
    }
    assert!(
        a.handoffs.is_empty(),
        "an answered hand-off is not handed on"
    );
}
