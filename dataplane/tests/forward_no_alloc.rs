//! Proves the forwarding path allocates nothing per packet once warm: a counting
//! global allocator wraps the system one, and 10,000 SRTP packets are forwarded to
//! three subscribers after the first packet of the stream.

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

#[test]
fn zero_allocations_per_forwarded_packet() {
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let mut table = ForwardingTable::new(0);
        let mut sink = RecordingSink::with_capacity(8);
        let now = Instant::now();
        let mut publisher = peer(1, 5000, profile);
        table.apply(now, publisher.install.clone(), &mut sink);
        for id in 2..5 {
            let s = peer(id, 6000, profile);
            table.apply(now, s.install.clone(), &mut sink);
            table.apply(
                now,
                route(1, 0xAAAA, id, 0xB000 + id as u32, (96, 96)),
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
