//! The io_uring backend: the same two operations as the userspace one (receive a
//! batch into fixed buffers, send a batch from fixed buffers), driven through two
//! rings per socket.
//!
//! Receive: one multishot `IORING_OP_RECVMSG` stays armed on the socket and picks its
//! buffers from a provided-buffer ring (`IORING_REGISTER_PBUF_RING`). Each completion
//! is one datagram laid out by the kernel as `io_uring_recvmsg_out` header, source
//! address, payload. [`UringRecv::recv`] waits for the first completion with one
//! `io_uring_enter` carrying a timeout, then reaps every completion ready; the
//! buffers go back to the ring when the batch has been processed. When the kernel ends
//! the multishot request (no `IORING_CQE_F_MORE`, typically because every buffer was
//! in use), the next `recv` arms it again and the re-arm is counted.
//!
//! Send: [`BATCH`](crate::io::BATCH) fixed slots (message header, iovec, destination, buffer). A flush
//! pushes one `IORING_OP_SENDMSG` per queued slot and submits them with one
//! `io_uring_enter` that also waits for their completions, so every slot is free again
//! when `flush` returns. Sends use `MSG_DONTWAIT`: a full socket buffer fails the
//! datagram (counted) instead of stalling the caller.
//!
//! Both rings are created with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
//! when the kernel has them (completion work then runs only inside our own
//! `io_uring_enter` calls), so the backend is used from the thread that created it:
//! the types are deliberately not `Send`. Everything is allocated in `new`; receiving
//! and sending allocate nothing.
//!
//! This module sets the rings up and probes the kernel; `recv.rs` and `send.rs` hold
//! the two sides.

mod recv;
mod send;

pub use self::recv::UringRecv;
pub use self::send::UringSend;

use std::io;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, opcode};
use socket2::{Domain, Protocol, Socket, Type};

/// Receive buffers in the provided-buffer ring of [`UringIo::new`].
pub const RECV_BUFFERS: u16 = 512;

/// Payload the probe sends to itself.
const PROBE_PAYLOAD: &[u8] = b"cascade io_uring probe";

/// Marker that keeps the backend on the thread that created its rings.
pub(super) type NotSend = PhantomData<*mut ()>;

/// Checks that this kernel and process can run the backend: ring setup, provided
/// buffer ring registration, multishot `IORING_OP_RECVMSG` and `IORING_OP_SENDMSG`,
/// by sending one datagram to itself on a loopback socket. `Err` says what is
/// missing (io_uring blocked by seccomp or `kernel.io_uring_disabled`, old kernel);
/// the caller then uses the userspace backend.
pub fn probe() -> Result<(), io::Error> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("probe socket has no IP address"))?;
    let mut io = UringIo::with_buffers(&socket, 4).map_err(|e| context("io_uring setup", e))?;

    let mut ops = Probe::new();
    io.rx
        .ring
        .submitter()
        .register_probe(&mut ops)
        .map_err(|e| context("io_uring opcode probe", e))?;
    for (code, name) in [
        (opcode::RecvMsgMulti::CODE, "IORING_OP_RECVMSG"),
        (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !ops.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring: {name} not supported by this kernel"),
            ));
        }
    }

    // Arm the multishot receive: a kernel without it fails the request at once.
    io.recv(Duration::ZERO)
        .map_err(|e| context("io_uring multishot recvmsg", e))?;

    let buf = io.tx.next_buffer();
    buf[..PROBE_PAYLOAD.len()].copy_from_slice(PROBE_PAYLOAD);
    io.tx.commit(PROBE_PAYLOAD.len(), local);
    io.flush();
    if io.take_failed() > 0 {
        return Err(io::Error::other("io_uring: sendmsg to loopback failed"));
    }

    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let n = io
            .recv(Duration::from_millis(20))
            .map_err(|e| context("io_uring multishot recvmsg", e))?;
        for i in 0..n {
            if let Some((from, data)) = io.get_mut(i)
                && from == local
                && data == PROBE_PAYLOAD
            {
                return Ok(());
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "io_uring: probe datagram not received on loopback",
    ))
}

/// Prefixes an error with the step that failed.
fn context(step: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{step}: {e}"))
}

/// Creates a ring, with single-issuer deferred task running when the kernel has it.
pub(super) fn build_ring(sq_entries: u32, cq_entries: u32) -> io::Result<IoUring> {
    let fast = IoUring::builder()
        .setup_cqsize(cq_entries)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(sq_entries);
    match fast {
        // Kernels before 6.1 reject the flags they do not know.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(cq_entries)
            .build(sq_entries),
        other => other,
    }
}

/// Whether an `io_uring_enter` error only means "nothing more happened this time".
pub(super) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// The io_uring backend of one socket: the receive side and the send side,
/// each with its own ring. Use [`UringIo::split`] to forward a received datagram
/// (borrowed from the receive side) through the send side. Not `Send`: create it on
/// the thread that uses it (the rings are single-issuer).
pub struct UringIo<'s> {
    rx: UringRecv<'s>,
    tx: UringSend<'s>,
}

impl std::fmt::Debug for UringIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .finish()
    }
}

impl<'s> UringIo<'s> {
    /// Sets up both rings on `socket` with [`RECV_BUFFERS`] receive buffers.
    pub fn new(socket: &'s Socket) -> io::Result<Self> {
        Self::with_buffers(socket, RECV_BUFFERS)
    }

    /// Sets up both rings with `buffers` receive buffers (a power of two, 1 to 32768).
    pub fn with_buffers(socket: &'s Socket, buffers: u16) -> io::Result<Self> {
        Ok(Self {
            rx: UringRecv::new(socket, buffers)?,
            tx: UringSend::new(socket)?,
        })
    }

    /// See [`UringRecv::recv`].
    pub fn recv(&mut self, timeout: Duration) -> io::Result<usize> {
        self.rx.recv(timeout)
    }

    /// See [`UringRecv::get_mut`].
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        self.rx.get_mut(i)
    }

    /// See [`UringRecv::recycle`].
    pub fn recycle(&mut self) {
        self.rx.recycle();
    }

    /// The send side.
    pub fn sender(&mut self) -> &mut UringSend<'s> {
        &mut self.tx
    }

    /// Both sides at once: datagrams borrowed from the first can be forwarded through
    /// the second.
    pub fn split(&mut self) -> (&mut UringRecv<'s>, &mut UringSend<'s>) {
        (&mut self.rx, &mut self.tx)
    }

    /// See [`UringSend::flush`].
    pub fn flush(&mut self) {
        self.tx.flush();
    }

    /// See [`UringSend::take_failed`].
    pub fn take_failed(&mut self) -> u64 {
        self.tx.take_failed()
    }

    /// See [`UringRecv::take_rearms`].
    pub fn take_rearms(&mut self) -> u64 {
        self.rx.take_rearms()
    }

    /// See [`UringRecv::take_dropped`].
    pub fn take_dropped(&mut self) -> u64 {
        self.rx.take_dropped()
    }
}
