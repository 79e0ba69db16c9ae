//! The io_uring backend against real loopback sockets: the probe, receiving through
//! the multishot recvmsg and its provided-buffer ring (including running out of
//! buffers), datagrams that do not fit, IPv6 sources, and batched sends.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cascade_dataplane::io::{BATCH, MAX_DATAGRAM, uring};
use socket2::{Domain, Protocol, Socket, Type};

#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/src/skip.rs"]
mod skip;

/// Whether the tests can run: io_uring must work here under CI ([`skip::skip`]).
fn uring_available() -> bool {
    match uring::probe() {
        Ok(()) => true,
        Err(e) => skip::skip(&format!("the io_uring backend ({e})")),
    }
}

/// A UDP socket on `ip`, port 0, with room for bursts.
fn bound_socket(ip: SocketAddr) -> std::io::Result<(Socket, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(ip), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_recv_buffer_size(4 << 20)?;
    socket.bind(&ip.into())?;
    let addr = socket.local_addr()?.as_socket().expect("IP socket");
    Ok((socket, addr))
}

fn loopback_v4() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Distinct contents for datagram `i` of length `len`.
fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
        .collect();
    let tag = (i as u32).to_be_bytes();
    let n = len.min(4);
    p[..n].copy_from_slice(&tag[..n]);
    p
}

/// Receives exactly `want` datagrams (5 s at most) and returns them in arrival order.
fn receive_n(io: &mut uring::UringIo<'_>, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::with_capacity(want);
    while got.len() < want && Instant::now() < deadline {
        let n = io.recv(Duration::from_millis(50)).expect("recv");
        for i in 0..n {
            let (from, data) = io.get_mut(i).expect("ready datagram");
            got.push((from, data.to_vec()));
        }
        io.recycle();
    }
    got
}

#[test]
fn probe_succeeds() {
    if uring_available() {
        eprintln!("io_uring backend available");
    }
}

#[test]
fn receives_a_thousand_datagrams_on_loopback() {
    if !uring_available() {
        return;
    }
    let (socket, addr) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let peer = UdpSocket::bind(loopback_v4()).unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let sizes: Vec<usize> = (0..1000).map(|i| 1 + (i * 37) % 1500).collect();
    let mut next = 0;
    for burst in sizes.chunks(50) {
        let expected: Vec<Vec<u8>> = burst
            .iter()
            .enumerate()
            .map(|(k, &len)| payload(next + k, len))
            .collect();
        for p in &expected {
            peer.send_to(p, addr).unwrap();
        }
        let got = receive_n(&mut io, expected.len());
        assert_eq!(got.len(), expected.len(), "burst starting at {next}");
        for (k, (from, data)) in got.iter().enumerate() {
            assert_eq!(*from, peer_addr);
            assert_eq!(data, &expected[k], "datagram {}", next + k);
        }
        next += burst.len();
    }
    assert_eq!(next, 1000);
    assert_eq!(io.take_dropped(), 0);
    // The ring never ran dry, so the first arm was enough.
    assert_eq!(io.take_rearms(), 0);
}

#[test]
fn received_data_is_mutable_in_place() {
    if !uring_available() {
        return;
    }
    let (socket, addr) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let peer = UdpSocket::bind(loopback_v4()).unwrap();
    peer.send_to(b"abcdef", addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while io.recv(Duration::from_millis(50)).unwrap() == 0 {
        assert!(Instant::now() < deadline, "nothing received");
    }
    let (_, data) = io.get_mut(0).unwrap();
    data.copy_from_slice(b"ABCDEF");
    let (_, data) = io.get_mut(0).unwrap();
    assert_eq!(data, b"ABCDEF");
    assert!(io.get_mut(1).is_none());
    io.recycle();
    assert!(io.get_mut(0).is_none());
}

#[test]
fn sends_through_the_sink_in_batches() {
    if !uring_available() {
        return;
    }
    let (socket, _) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let local = socket.local_addr().unwrap().as_socket().unwrap();
    let dest = UdpSocket::bind(loopback_v4()).unwrap();
    dest.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let dest_addr = dest.local_addr().unwrap();

    // 40 > BATCH: the 33rd next_buffer flushes the first 32 by itself.
    let groups = [10usize, 40, 1, 49];
    assert!(groups.iter().any(|&g| g > BATCH));
    let mut i = 0;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for group in groups {
        let expected: Vec<Vec<u8>> = (i..i + group)
            .map(|k| payload(k, 1 + (k * 53) % 1400))
            .collect();
        for p in &expected {
            let out = io.sender().next_buffer();
            assert!(out.len() >= MAX_DATAGRAM);
            out[..p.len()].copy_from_slice(p);
            io.sender().commit(p.len(), dest_addr);
        }
        io.flush();
        for (k, p) in expected.iter().enumerate() {
            let (n, from) = dest
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {} not received: {e}", i + k));
            assert_eq!(from, local);
            assert_eq!(&buf[..n], &p[..], "datagram {}", i + k);
        }
        i += group;
    }
    assert_eq!(i, 100);
    assert_eq!(io.take_failed(), 0);
    // Nothing queued: flushing again sends nothing.
    io.flush();
    dest.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(dest.recv_from(&mut buf).is_err());
}

#[test]
fn forwards_received_datagrams_through_split() {
    if !uring_available() {
        return;
    }
    let (socket, addr) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let peer = UdpSocket::bind(loopback_v4()).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for k in 0..20 {
        peer.send_to(&payload(k, 100 + k), addr).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut echoed = 0;
    while echoed < 20 && Instant::now() < deadline {
        let n = io.recv(Duration::from_millis(50)).unwrap();
        let (rx, tx) = io.split();
        for i in 0..n {
            let (from, data) = rx.get_mut(i).unwrap();
            data.reverse();
            let out = tx.next_buffer();
            out[..data.len()].copy_from_slice(data);
            tx.commit(data.len(), from);
        }
        rx.recycle();
        tx.flush();
        echoed += n;
    }
    assert_eq!(echoed, 20);
    let mut buf = [0u8; 2048];
    for k in 0..20 {
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        let mut expected = payload(k, 100 + k);
        expected.reverse();
        assert_eq!(&buf[..n], &expected[..]);
    }
    assert_eq!(io.take_failed(), 0);
}

#[test]
fn survives_buffer_ring_exhaustion() {
    if !uring_available() {
        return;
    }
    const BUFFERS: u16 = 16;
    let (socket, addr) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::with_buffers(&socket, BUFFERS).unwrap();
    let peer = UdpSocket::bind(loopback_v4()).unwrap();
    let peer_addr = peer.local_addr().unwrap();

    // Far more datagrams than buffers, none received in between.
    let expected: Vec<Vec<u8>> = (0..100).map(|k| payload(k, 20 + k)).collect();
    for p in &expected {
        peer.send_to(p, addr).unwrap();
    }
    let got = receive_n(&mut io, expected.len());
    assert_eq!(got.len(), expected.len());
    for (k, (from, data)) in got.iter().enumerate() {
        assert_eq!(*from, peer_addr);
        assert_eq!(data, &expected[k], "datagram {k}");
    }
    let rearms = io.take_rearms();
    assert!(
        rearms >= (100 / usize::from(BUFFERS)) as u64,
        "only {rearms} re-arms"
    );

    // Re-armed: later datagrams still arrive.
    let later: Vec<Vec<u8>> = (100..120).map(|k| payload(k, 300)).collect();
    for p in &later {
        peer.send_to(p, addr).unwrap();
    }
    let got = receive_n(&mut io, later.len());
    assert_eq!(got.len(), later.len());
    for (k, (_, data)) in got.iter().enumerate() {
        assert_eq!(data, &later[k]);
    }
    assert_eq!(io.take_dropped(), 0);
}

#[test]
fn drops_datagrams_that_do_not_fit_and_keeps_going() {
    if !uring_available() {
        return;
    }
    let (socket, addr) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let peer = UdpSocket::bind(loopback_v4()).unwrap();

    let sent = [
        payload(0, 0),
        payload(1, MAX_DATAGRAM),
        payload(2, MAX_DATAGRAM + 1),
        payload(3, 65_507),
        payload(4, 1),
    ];
    for p in &sent {
        peer.send_to(p, addr).unwrap();
    }
    let got = receive_n(&mut io, 3);
    let lens: Vec<usize> = got.iter().map(|(_, d)| d.len()).collect();
    assert_eq!(lens, [0, MAX_DATAGRAM, 1]);
    assert_eq!(got[1].1, sent[1]);
    assert_eq!(got[2].1, sent[4]);
    assert_eq!(io.take_dropped(), 2);
    // Nothing else is pending.
    assert_eq!(io.recv(Duration::from_millis(20)).unwrap(), 0);
}

#[test]
fn reports_ipv6_sources() {
    if !uring_available() {
        return;
    }
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    let (socket, addr) = match bound_socket(v6) {
        Ok(bound) => bound,
        Err(e) => {
            skip::skip(&format!("an IPv6 loopback ({e})"));
            return;
        }
    };
    let mut io = uring::UringIo::new(&socket).unwrap();
    let peer = UdpSocket::bind(v6).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    peer.send_to(b"over v6", addr).unwrap();
    let got = receive_n(&mut io, 1);
    assert_eq!(got, [(peer.local_addr().unwrap(), b"over v6".to_vec())]);

    let out = io.sender().next_buffer();
    out[..5].copy_from_slice(b"reply");
    io.sender().commit(5, got[0].0);
    io.flush();
    let mut buf = [0u8; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"reply"[..], addr));
}

#[test]
fn idle_recv_times_out_with_nothing() {
    if !uring_available() {
        return;
    }
    let (socket, _) = bound_socket(loopback_v4()).unwrap();
    let mut io = uring::UringIo::new(&socket).unwrap();
    let start = Instant::now();
    assert_eq!(io.recv(Duration::from_millis(30)).unwrap(), 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(25),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
    assert!(io.get_mut(0).is_none());
}

/// Where io_uring is blocked (here: a seccomp filter on this thread refusing
/// `io_uring_setup` with EPERM, as container runtimes do), the probe and the
/// constructor fail with an error instead of panicking.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn probe_fails_cleanly_when_io_uring_is_blocked() {
    /// `io_uring_setup` on x86_64 and aarch64.
    const SYS_IO_URING_SETUP: u32 = 425;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let result = std::thread::spawn(|| {
        let mut filter = [
            // Load the syscall number (offset 0 of seccomp_data).
            libc::sock_filter {
                code: LD_W_ABS,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: JEQ_K,
                jt: 0,
                jf: 1,
                k: SYS_IO_URING_SETUP,
            },
            libc::sock_filter {
                code: RET_K,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            },
            libc::sock_filter {
                code: RET_K,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            },
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: prctl with integer arguments only affects this thread.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if rc != 0 {
            return None;
        }
        // SAFETY: `prog` points at a valid filter that outlives the call (the kernel
        // copies it); the filter applies to this thread only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return None;
        }

        let probe = uring::probe();
        let (socket, _) = bound_socket(loopback_v4()).unwrap();
        let new = uring::UringIo::new(&socket).map(drop);
        Some((probe, new))
    })
    .join()
    .expect("no panic with io_uring blocked");
    let Some((probe, new)) = result else {
        skip::skip("a seccomp filter (prctl refused it)");
        return;
    };
    let err = probe.expect_err("probe must fail when io_uring_setup is refused");
    eprintln!("probe with io_uring blocked: {err}");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(new.is_err());
}
