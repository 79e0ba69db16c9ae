//! Batched UDP I/O for the load generator and the raw relay: `sendmmsg`/`recvmmsg`
//! over preallocated buffers, an `epoll` set over many sockets, socket buffer sizing.
//! Nothing here allocates per packet.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per `sendmmsg`/`recvmmsg` call.
pub(crate) const BATCH: usize = 32;
/// Size of every buffer: larger than any datagram the bench sends.
pub(crate) const BUF_LEN: usize = 2048;

/// A batch of datagram buffers with the `mmsghdr` array the kernel reads or fills.
/// The header array points into the buffers; the pointers are rebuilt before every
/// call, so the struct may move freely between calls.
pub(crate) struct Batch {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    names: [libc::sockaddr_in; BATCH],
    iovs: [libc::iovec; BATCH],
    msgs: [libc::mmsghdr; BATCH],
    /// Number of datagrams queued for sending.
    len: usize,
}

impl Batch {
    pub(crate) fn new() -> Box<Self> {
        // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs for which all
        // zero bytes (null pointers, zero lengths) is a valid value.
        unsafe {
            Box::new(Self {
                bufs: vec![0u8; BATCH * BUF_LEN],
                lens: [0; BATCH],
                names: std::mem::zeroed(),
                iovs: std::mem::zeroed(),
                msgs: std::mem::zeroed(),
                len: 0,
            })
        }
    }

    /// Datagrams queued so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// The whole buffer of slot `i`.
    pub(crate) fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * BUF_LEN..(i + 1) * BUF_LEN]
    }

    /// The first `lens[i]` bytes of slot `i` (after a receive: the datagram).
    pub(crate) fn datagram_mut(&mut self, i: usize) -> &mut [u8] {
        let n = self.lens[i];
        &mut self.bufs[i * BUF_LEN..i * BUF_LEN + n]
    }

    /// The source address of received datagram `i` (IPv4 only).
    pub(crate) fn source(&self, i: usize) -> SocketAddrV4 {
        from_sockaddr_in(&self.names[i])
    }

    /// The next free send slot's buffer; queue it with [`Self::push`].
    pub(crate) fn next_mut(&mut self) -> &mut [u8] {
        let i = self.len;
        self.buf_mut(i)
    }

    /// Queues the next slot with `len` bytes for `dest` (`None` on a connected socket).
    pub(crate) fn push(&mut self, len: usize, dest: Option<SocketAddrV4>) {
        let i = self.len;
        self.lens[i] = len;
        self.msgs[i].msg_hdr.msg_namelen = 0;
        if let Some(d) = dest {
            self.names[i] = to_sockaddr_in(d);
            self.msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        }
        self.len += 1;
    }

    /// Copies `data` into the next slot and queues it for `dest`.
    pub(crate) fn push_copy(&mut self, data: &[u8], dest: Option<SocketAddrV4>) {
        let n = data.len().min(BUF_LEN);
        self.next_mut()[..n].copy_from_slice(&data[..n]);
        self.push(n, dest);
    }

    fn prepare(&mut self, count: usize, receive: bool) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..count {
            // SAFETY: i < BATCH, so the offset stays inside `bufs` (BATCH * BUF_LEN bytes).
            let ptr = unsafe { base.add(i * BUF_LEN) };
            self.iovs[i] = libc::iovec {
                iov_base: ptr.cast(),
                iov_len: if receive { BUF_LEN } else { self.lens[i] },
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            if receive {
                hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
                hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            } else if hdr.msg_namelen == 0 {
                hdr.msg_name = std::ptr::null_mut();
            } else {
                hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            }
            self.msgs[i].msg_len = 0;
        }
    }

    /// Sends every queued datagram on `fd` (retrying partial sends) and empties the
    /// batch. Returns how many the kernel took; the rest (on `EAGAIN`/`ENOBUFS` or
    /// an error) are dropped and counted by the caller as the difference.
    pub(crate) fn send(&mut self, fd: RawFd) -> usize {
        let count = self.len;
        self.prepare(count, false);
        let mut done = 0usize;
        let mut spins = 0;
        while done < count {
            // SAFETY: msgs[done..count] were prepared above and point into `self`,
            // which outlives the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr().add(done),
                    (count - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                done += rc as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) if spins < 64 => {
                    spins += 1;
                    std::thread::yield_now();
                }
                // ECONNREFUSED reports an earlier ICMP error; the datagram was not sent.
                Some(libc::ECONNREFUSED) if spins < 64 => spins += 1,
                _ => break,
            }
        }
        self.len = 0;
        done
    }

    /// Receives up to [`BATCH`] datagrams from `fd` without blocking; returns how many
    /// (0 when none is waiting). Read them with [`Self::datagram_mut`].
    pub(crate) fn recv(&mut self, fd: RawFd) -> usize {
        self.prepare(BATCH, true);
        loop {
            // SAFETY: every msgs entry was prepared above and points into `self`.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc > 0 {
                let n = rc as usize;
                for i in 0..n {
                    self.lens[i] = (self.msgs[i].msg_len as usize).min(BUF_LEN);
                }
                return n;
            }
            if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return 0;
        }
    }
}

fn to_sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr_in(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        u32::from_be(s.sin_addr.s_addr).into(),
        u16::from_be(s.sin_port),
    )
}

/// The IPv4 address of `addr`, or an error for IPv6 (the bench is IPv4 only).
pub(crate) fn v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::other("IPv6 address where IPv4 was expected")),
    }
}

/// Sets a socket buffer size, bypassing `net.core.[rw]mem_max` when permitted (root).
pub(crate) fn set_buffers(sock: &UdpSocket, rcv: usize, snd: usize) {
    let fd = sock.as_raw_fd();
    for (force, plain, size) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcv),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, snd),
    ] {
        if size == 0 {
            continue;
        }
        let v = size as libc::c_int;
        let len = size_of::<libc::c_int>() as libc::socklen_t;
        let p = (&v as *const libc::c_int).cast();
        // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of `len` bytes.
        let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, force, p, len) };
        if rc != 0 {
            // SAFETY: as above.
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, plain, p, len) };
        }
    }
}

/// Asks for `size`-byte receive and send buffers the unprivileged way (capped by
/// `net.core.[rw]mem_max`).
pub(crate) fn plain_buffers(sock: &UdpSocket, size: usize) {
    let fd = sock.as_raw_fd();
    let v = size as libc::c_int;
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of `len` bytes.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                len,
            )
        };
    }
}

/// An epoll set; each registered fd carries a caller-chosen `u64` token.
pub(crate) struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub(crate) fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    /// Watches `fd` for readability (level-triggered).
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both fds are valid; ev is a live epoll_event.
        let rc = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and returns the tokens of the ready fds.
    pub(crate) fn wait(&mut self, timeout_ms: i32) -> impl Iterator<Item = u64> + '_ {
        // SAFETY: `events` has `len` writable entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        self.events[..n].iter().map(|e| e.u64)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the fd was opened by epoll_create1 and is closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Lowers this thread's timer slack to 1 µs so that short sleeps are short.
pub(crate) fn tight_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
}

/// The kernel thread id of the calling thread.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}
