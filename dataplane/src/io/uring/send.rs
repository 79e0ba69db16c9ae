//! The send side of the io_uring backend: [`BATCH`] fixed slots flushed as one batch
//! of `IORING_OP_SENDMSG` requests.
//!
//! It owns the send ring and the slots. It must not reuse a slot before the kernel
//! has completed its send, or wait on a full socket buffer (sends use `MSG_DONTWAIT`).

use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use io_uring::types::Fd;
use io_uring::{IoUring, opcode};
use socket2::{SockAddr, Socket};

use super::{NotSend, build_ring, is_transient};
use crate::io::{BATCH, BatchSend, MAX_DATAGRAM};

/// `user_data` of the sends.
const SEND_TAG: u64 = 3;

/// Submission queue size: one entry per slot.
const SEND_SQ_ENTRIES: u32 = BATCH as u32;

/// `io_uring_enter` attempts a flush makes before it gives up on confirming its sends.
const SEND_WAIT_ATTEMPTS: usize = 64;

/// One send slot: everything a queued sendmsg points at.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    dest: SockAddr,
    len: usize,
    buf: [u8; MAX_DATAGRAM],
}

impl SendSlot {
    fn new() -> Self {
        Self {
            // SAFETY: msghdr and iovec are plain C structs for which all-zero bytes are valid.
            hdr: unsafe { MaybeUninit::zeroed().assume_init() },
            // SAFETY: as above.
            iov: unsafe { MaybeUninit::zeroed().assume_init() },
            dest: SockAddr::from(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            len: 0,
            buf: [0; MAX_DATAGRAM],
        }
    }
}

/// The send side: [`BATCH`] fixed slots flushed as one batch of sendmsg requests.
pub struct UringSend<'s> {
    /// Declared first so it is closed before the slots are freed.
    ring: IoUring,
    fd: RawFd,
    slots: Box<[SendSlot]>,
    queued: usize,
    /// Datagrams the kernel refused since the last call to `take_failed`.
    failed: u64,
    _socket: PhantomData<&'s Socket>,
    _thread: NotSend,
}

impl std::fmt::Debug for UringSend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringSend")
            .field("queued", &self.queued)
            .finish()
    }
}

impl<'s> UringSend<'s> {
    /// Creates the send ring and its slots.
    pub fn new(socket: &'s Socket) -> io::Result<Self> {
        Ok(Self {
            ring: build_ring(SEND_SQ_ENTRIES, 2 * SEND_SQ_ENTRIES)?,
            fd: socket.as_raw_fd(),
            slots: (0..BATCH).map(|_| SendSlot::new()).collect(),
            queued: 0,
            failed: 0,
            _socket: PhantomData,
            _thread: PhantomData,
        })
    }

    /// The next free slot's buffer ([`MAX_DATAGRAM`] bytes); flushes the batch first
    /// when every slot is queued.
    pub fn next_buffer(&mut self) -> &mut [u8] {
        if self.queued == BATCH {
            self.flush();
        }
        &mut self.slots[self.queued].buf[..]
    }

    /// Queues the first `len` bytes of the buffer last returned by
    /// [`Self::next_buffer`] for `dest`.
    pub fn commit(&mut self, len: usize, dest: SocketAddr) {
        if self.queued == BATCH {
            // commit without next_buffer: nothing valid was written.
            return;
        }
        let slot = &mut self.slots[self.queued];
        slot.len = len.min(MAX_DATAGRAM);
        slot.dest = SockAddr::from(dest);
        self.queued += 1;
    }

    /// Submits every queued datagram as one sendmsg request each, with one
    /// `io_uring_enter` that also waits for their completions. Every slot is free
    /// again on return; refused datagrams are counted in `take_failed`.
    pub fn flush(&mut self) {
        let n = self.queued;
        if n == 0 {
            return;
        }
        self.queued = 0;
        let mut pushed = 0;
        {
            let mut sq = self.ring.submission();
            for slot in &mut self.slots[..n] {
                slot.iov = libc::iovec {
                    iov_base: slot.buf.as_mut_ptr().cast(),
                    iov_len: slot.len,
                };
                slot.hdr.msg_name = slot.dest.as_ptr() as *mut libc::c_void;
                slot.hdr.msg_namelen = slot.dest.len();
                slot.hdr.msg_iov = &mut slot.iov;
                slot.hdr.msg_iovlen = 1;
                let entry = opcode::SendMsg::new(Fd(self.fd), &slot.hdr)
                    .flags(libc::MSG_DONTWAIT as u32)
                    .build()
                    .user_data(SEND_TAG);
                // SAFETY: header, iovec, address and payload live in this slot, which
                // is neither moved nor written until the completion is reaped below
                // (and the ring is closed before the slots are freed).
                if unsafe { sq.push(&entry) }.is_err() {
                    break;
                }
                pushed += 1;
            }
        }
        self.failed += (n - pushed) as u64;
        let mut pending = pushed;
        let mut attempts = 0;
        while pending > 0 {
            if let Err(e) = self.ring.submit_and_wait(pending)
                && !is_transient(&e)
            {
                attempts = SEND_WAIT_ATTEMPTS;
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() != SEND_TAG {
                    continue;
                }
                pending = pending.saturating_sub(1);
                if cqe.result() < 0 {
                    self.failed += 1;
                }
            }
            attempts += 1;
            if attempts >= SEND_WAIT_ATTEMPTS {
                // The kernel did not take or confirm these sends: count them lost.
                self.failed += pending as u64;
                break;
            }
        }
    }

    /// Datagrams the kernel refused since the last call.
    pub fn take_failed(&mut self) -> u64 {
        std::mem::take(&mut self.failed)
    }
}

impl BatchSend for UringSend<'_> {
    fn next_buffer(&mut self) -> &mut [u8] {
        UringSend::next_buffer(self)
    }

    fn commit(&mut self, len: usize, dest: SocketAddr) {
        UringSend::commit(self, len, dest);
    }

    fn flush(&mut self) {
        UringSend::flush(self);
    }

    fn take_failed(&mut self) -> u64 {
        UringSend::take_failed(self)
    }
}
