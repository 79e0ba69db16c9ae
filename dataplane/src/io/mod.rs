//! Socket I/O backends. Every socket trick (reuseport groups, batched receive and
//! send, timeouts, io_uring) lives here, behind two operations: receive a batch of
//! datagrams into fixed buffers ([`BatchRecv`]), send a batch from fixed buffers
//! ([`BatchSend`]).
//!
//! It owns sockets, buffers and the system calls that move datagrams. It knows nothing
//! of what the datagrams carry or who processes them: the layers above adapt to these
//! types, never the reverse.

pub mod uring;
pub mod userspace;

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams moved per batched receive or send call.
pub const BATCH: usize = 32;

/// Size of every receive and send buffer; larger datagrams are truncated by the
/// kernel (and then fail authentication) or discarded by the backend.
pub const MAX_DATAGRAM: usize = 2048;

/// The receive half of a backend: a batch of datagrams received into buffers it owns.
pub trait BatchRecv {
    /// Waits up to `timeout` for datagrams; returns how many are ready (0 on timeout).
    fn recv_batch(&mut self, timeout: Duration) -> std::io::Result<usize>;
    /// The `i`-th ready datagram, writable in place, and its source.
    fn datagram(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])>;
    /// Gives the batch's buffers back for the next receive.
    fn recycle(&mut self) {}
    /// Datagrams discarded by the backend itself since the last call.
    fn take_dropped(&mut self) -> u64 {
        0
    }
}

/// The send half of a backend: datagrams are written straight into its buffers,
/// queue there and leave in one batch per flush.
pub trait BatchSend {
    /// The next free send buffer ([`MAX_DATAGRAM`] bytes). The backend flushes its
    /// batch first when it is full.
    fn next_buffer(&mut self) -> &mut [u8];
    /// Queues the first `len` bytes of the buffer last returned by `next_buffer`
    /// for `dest`.
    fn commit(&mut self, len: usize, dest: SocketAddr);
    /// Sends everything queued.
    fn flush(&mut self);
    /// Datagrams the kernel refused since the last call.
    fn take_failed(&mut self) -> u64;
}

/// Opens `count` UDP sockets bound to the same address in one SO_REUSEPORT group.
/// Port 0 picks a free port for the first and binds the others to it.
pub fn bind_reuseport_group(listen: SocketAddr, count: usize) -> std::io::Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(count);
    let mut addr = listen;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.set_recv_buffer_size(8 << 20)?;
        socket.set_send_buffer_size(8 << 20)?;
        socket.bind(&addr.into())?;
        if addr.port() == 0 {
            addr = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| std::io::Error::other("socket has no IP address"))?;
        }
        sockets.push(socket);
    }
    Ok(sockets)
}
