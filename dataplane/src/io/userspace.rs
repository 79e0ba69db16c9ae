//! The pure-userspace backend: `recvmmsg`/`sendmmsg` on a blocking socket with a short
//! receive timeout (so the caller regularly gets control back even when no datagram
//! arrives).
//! Buffers are allocated once; a batch call allocates nothing.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockAddr, Socket};

use super::{BATCH, BatchRecv, BatchSend, MAX_DATAGRAM};

/// Fixed receive buffers and the headers `recvmmsg` fills.
pub struct RecvBatch<'s> {
    socket: &'s Socket,
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    count: usize,
}

impl std::fmt::Debug for RecvBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .finish()
    }
}

impl<'s> RecvBatch<'s> {
    /// Receive buffers for `socket`, whose receive timeout (SO_RCVTIMEO) bounds a wait.
    pub fn new(socket: &'s Socket) -> Self {
        Self {
            socket,
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            addrs: Box::new(std::array::from_fn(zeroed)),
            iovecs: Box::new(std::array::from_fn(zeroed)),
            hdrs: Box::new(std::array::from_fn(zeroed)),
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams, waiting at most the socket's receive
    /// timeout for the first. Returns how many arrived (0 on timeout).
    pub fn recv(&mut self) -> std::io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            self.count = 0;
            return match err.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        self.count = n as usize;
        Ok(self.count)
    }

    /// The `i`-th received datagram and its source.
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        if i >= self.count {
            return None;
        }
        let len = (self.hdrs[i].msg_len as usize).min(MAX_DATAGRAM);
        let from = socket_addr(&self.addrs[i])?;
        Some((from, &mut self.bufs[i][..len]))
    }
}

/// All-zero value of a plain C struct (sockaddr_storage, iovec, mmsghdr).
fn zeroed<T: Copy>(_: usize) -> T {
    // SAFETY: only used for libc structs made of integers and pointers, for which
    // all-zero bytes are a valid value.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// The IPv4 or IPv6 address the kernel wrote into `storage`.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in, which is smaller.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6, which is smaller.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Fixed send buffers flushed with one `sendmmsg` per batch.
pub struct SendBatch<'s> {
    socket: &'s Socket,
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    lens: [usize; BATCH],
    dests: Box<[SockAddr; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
    queued: usize,
    /// Datagrams the kernel refused since the last call to `take_failed`.
    failed: u64,
}

impl std::fmt::Debug for SendBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.queued)
            .finish()
    }
}

impl<'s> SendBatch<'s> {
    pub fn new(socket: &'s Socket) -> Self {
        let unspecified: SocketAddr = ([0, 0, 0, 0], 0).into();
        Self {
            socket,
            bufs: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            lens: [0; BATCH],
            dests: Box::new(std::array::from_fn(|_| SockAddr::from(unspecified))),
            iovecs: Box::new(std::array::from_fn(zeroed)),
            hdrs: Box::new(std::array::from_fn(zeroed)),
            queued: 0,
            failed: 0,
        }
    }

    /// The next free send buffer ([`MAX_DATAGRAM`] bytes); flushes the batch first
    /// when it is full.
    pub fn next_buffer(&mut self) -> &mut [u8] {
        if self.queued == BATCH {
            self.flush();
        }
        &mut self.bufs[self.queued][..]
    }

    /// Queues the first `len` bytes of the buffer last returned by
    /// [`Self::next_buffer`] for `dest`.
    pub fn commit(&mut self, len: usize, dest: SocketAddr) {
        if self.queued == BATCH {
            // commit without next_buffer: nothing valid was written.
            return;
        }
        self.lens[self.queued] = len.min(MAX_DATAGRAM);
        self.dests[self.queued] = SockAddr::from(dest);
        self.queued += 1;
    }

    /// Sends everything queued with one `sendmmsg` (more only if the kernel takes
    /// part of the batch).
    pub fn flush(&mut self) {
        let mut start = 0;
        while start < self.queued {
            let count = self.queued - start;
            for i in 0..count {
                let j = start + i;
                self.iovecs[i] = libc::iovec {
                    iov_base: self.bufs[j].as_mut_ptr().cast(),
                    iov_len: self.lens[j],
                };
                let hdr = &mut self.hdrs[i].msg_hdr;
                hdr.msg_name = self.dests[j].as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = self.dests[j].len();
                hdr.msg_iov = &mut self.iovecs[i];
                hdr.msg_iovlen = 1;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
            }
            // SAFETY: headers point at buffers and addresses owned by self.
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                let err = std::io::Error::last_os_error();
                if n < 0 && err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram of what is left was refused (full buffer,
                // unreachable destination): drop it and carry on with the rest.
                self.failed += 1;
                start += 1;
            } else {
                start += n as usize;
            }
        }
        self.queued = 0;
    }

    /// Datagrams the kernel refused since the last call.
    pub fn take_failed(&mut self) -> u64 {
        std::mem::take(&mut self.failed)
    }
}

impl BatchRecv for RecvBatch<'_> {
    /// The wait is bounded by the socket's receive timeout, set once at start.
    fn recv_batch(&mut self, _timeout: Duration) -> std::io::Result<usize> {
        self.recv()
    }

    fn datagram(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        self.get_mut(i)
    }
}

impl BatchSend for SendBatch<'_> {
    fn next_buffer(&mut self) -> &mut [u8] {
        SendBatch::next_buffer(self)
    }

    fn commit(&mut self, len: usize, dest: SocketAddr) {
        SendBatch::commit(self, len, dest);
    }

    fn flush(&mut self) {
        SendBatch::flush(self);
    }

    fn take_failed(&mut self) -> u64 {
        SendBatch::take_failed(self)
    }
}

/// Sets the receive timeout that bounds every wait of [`RecvBatch::recv`].
pub fn set_recv_timeout(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    socket.set_read_timeout(Some(timeout))
}
