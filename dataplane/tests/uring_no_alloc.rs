//! Proves the io_uring backend allocates nothing per datagram once warm: a counting
//! global allocator wraps the system one, and 10,000 datagrams are received and
//! 10,000 sent through `UringIo` on loopback. The count is per thread (the backend
//! runs on the test's thread), so the harness's other tests running in parallel do
//! not add theirs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cascade_dataplane::io::{BATCH, uring};
use socket2::{Domain, Protocol, Socket, Type};

#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/src/skip.rs"]
mod skip;

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one allocation if this thread is measuring. Touches only const-initialised
/// thread-locals without destructors, so it never allocates itself.
fn count() {
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DATAGRAMS: usize = 10_000;

/// One round: the peer sends `BATCH` datagrams, the backend receives them and sends
/// each back, the peer receives the echoes. Returns how many made the round trip.
fn round(
    io: &mut uring::UringIo<'_>,
    peer: &UdpSocket,
    addr: SocketAddr,
    seq: &mut u32,
    buf: &mut [u8; 2048],
) -> usize {
    for k in 0..BATCH {
        let len = 12 + (*seq as usize + k) % 1200;
        buf[..4].copy_from_slice(&(*seq + k as u32).to_be_bytes());
        peer.send_to(&buf[..len], addr).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut received = 0;
    while received < BATCH && Instant::now() < deadline {
        let n = io.recv(Duration::from_millis(50)).unwrap();
        let (rx, tx) = io.split();
        for i in 0..n {
            let (from, data) = rx.get_mut(i).unwrap();
            let expect = (*seq + (received + i) as u32).to_be_bytes();
            assert!(data[..4] == expect);
            let out = tx.next_buffer();
            out[..data.len()].copy_from_slice(data);
            tx.commit(data.len(), from);
        }
        rx.recycle();
        tx.flush();
        received += n;
    }
    assert!(received == BATCH, "datagrams lost on loopback");
    assert!(io.take_failed() == 0);
    for k in 0..received {
        let (_, from) = peer.recv_from(buf).unwrap();
        assert!(from == addr);
        assert!(buf[..4] == (*seq + k as u32).to_be_bytes());
    }
    *seq += received as u32;
    received
}

#[test]
fn zero_allocations_per_datagram() {
    if let Err(e) = uring::probe() {
        skip::skip(&format!("the io_uring backend ({e})"));
        return;
    }
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_recv_buffer_size(4 << 20).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    let mut seq = 0u32;

    // Warm-up: arms the receive, touches every path once.
    for _ in 0..4 {
        round(&mut io, &peer, addr, &mut seq, &mut buf);
    }

    ALLOCS.with(|c| c.set(0));
    MEASURING.with(|m| m.set(true));
    let mut moved = 0;
    while moved < DATAGRAMS {
        moved += round(&mut io, &peer, addr, &mut seq, &mut buf);
    }
    MEASURING.with(|m| m.set(false));
    let allocs = ALLOCS.with(Cell::get);
    assert!(moved >= DATAGRAMS);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations for {moved} datagrams received and sent"
    );
}
