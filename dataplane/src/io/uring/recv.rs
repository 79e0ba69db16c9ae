//! The receive side of the io_uring backend: one multishot `IORING_OP_RECVMSG` armed
//! on the socket, the provided-buffer ring it picks its buffers from, and the batch of
//! datagrams reaped from its completions.
//!
//! It owns the receive ring, the buffer memory and the buffer ring. It must not hand
//! a buffer back to the kernel while the caller still borrows it, or free the buffer
//! memory while the kernel may still write into it.

use std::io;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};
use socket2::Socket;

use super::{NotSend, build_ring, is_transient};
use crate::io::{BatchRecv, MAX_DATAGRAM};

/// Size of `struct io_uring_recvmsg_out`, which opens every multishot recvmsg buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// Room reserved for the source address in every receive buffer.
const NAME_LEN: usize = size_of::<libc::sockaddr_storage>();
/// Where the payload starts in a receive buffer (no control data is requested).
const PAYLOAD_OFFSET: usize = RECVMSG_OUT_LEN + NAME_LEN;
/// One receive buffer: header, source address, a full [`MAX_DATAGRAM`] payload.
const RECV_BUF_LEN: usize = PAYLOAD_OFFSET + MAX_DATAGRAM;

/// The buffer group of the provided-buffer ring (each receive ring has its own).
const BUF_GROUP: u16 = 0;

/// `user_data` of the multishot receive.
const RECV_TAG: u64 = 1;
/// `user_data` of the cancellation issued when the receive side is dropped.
const CANCEL_TAG: u64 = 2;

/// Submission queue sizes: the receive ring only ever holds a re-arm and a cancel.
const RECV_SQ_ENTRIES: u32 = 8;

/// Completions copied out of the completion queue at a time.
const REAP_CHUNK: usize = 64;

/// Longest wait accepted by [`UringRecv::recv`] (keeps the kernel timespec positive).
const MAX_WAIT: Duration = Duration::from_secs(u32::MAX as u64);

/// A datagram delivered by the kernel and not yet given back to the buffer ring.
#[derive(Clone, Copy)]
struct Ready {
    from: SocketAddr,
    bid: u16,
    len: u16,
}

/// One anonymous mapping holding the buffer ring entries (page aligned, as the
/// kernel requires) followed by the receive buffers.
struct Region {
    base: NonNull<u8>,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { base, len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping created in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// The receive side: a ring with one multishot recvmsg armed on the socket, and the
/// provided buffers it fills.
pub struct UringRecv<'s> {
    /// Dropped before `region`, after the multishot receive has been cancelled.
    pub(super) ring: ManuallyDrop<IoUring>,
    /// Buffer ring entries then buffers; leaked if the kernel might still use them.
    region: ManuallyDrop<Region>,
    /// Template of the multishot recvmsg: only the name and control lengths matter.
    msghdr: Box<libc::msghdr>,
    fd: RawFd,
    /// Byte offset of the first receive buffer in `region`.
    bufs_offset: usize,
    entries: u16,
    /// Next buffer ring slot to fill (free-running, masked with `entries - 1`).
    tail: u16,
    /// Datagrams of the current batch.
    ready: Box<[Ready]>,
    count: usize,
    /// A multishot receive is submitted (or queued for submission) and not ended.
    armed: bool,
    rearms: u64,
    dropped: u64,
    /// An error completion seen while datagrams were ready, returned by the next `recv`.
    pending_error: Option<i32>,
    _socket: PhantomData<&'s Socket>,
    _thread: NotSend,
}

impl std::fmt::Debug for UringRecv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringRecv")
            .field("buffers", &self.entries)
            .field("ready", &self.count)
            .field("armed", &self.armed)
            .finish()
    }
}

impl<'s> UringRecv<'s> {
    /// Creates the receive ring and registers `buffers` provided buffers (a power of
    /// two, 1 to 32768). The multishot receive is armed by the first [`Self::recv`].
    pub fn new(socket: &'s Socket, buffers: u16) -> io::Result<Self> {
        if !buffers.is_power_of_two() || buffers > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "receive buffer count must be a power of two up to 32768",
            ));
        }
        let entries = usize::from(buffers);
        // Every buffer can be delivered before the ring is reaped, plus the end of
        // the request and a cancellation.
        let ring = build_ring(RECV_SQ_ENTRIES, (2 * entries as u32).max(RECV_SQ_ENTRIES))?;

        // SAFETY: sysconf has no memory-safety preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let ring_bytes = (entries * size_of::<BufRingEntry>()).next_multiple_of(page);
        let region = Region::new(ring_bytes + entries * RECV_BUF_LEN)?;

        // SAFETY: msghdr is a plain C struct for which all-zero bytes are valid.
        let mut msghdr: Box<libc::msghdr> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;

        let mut recv = Self {
            ring: ManuallyDrop::new(ring),
            region: ManuallyDrop::new(region),
            msghdr,
            fd: socket.as_raw_fd(),
            bufs_offset: ring_bytes,
            entries: buffers,
            tail: 0,
            ready: vec![
                Ready {
                    from: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                    bid: 0,
                    len: 0,
                };
                entries
            ]
            .into_boxed_slice(),
            count: 0,
            armed: false,
            rearms: 0,
            dropped: 0,
            pending_error: None,
            _socket: PhantomData,
            _thread: PhantomData,
        };
        for bid in 0..buffers {
            recv.give_back(bid);
        }
        recv.publish_tail();
        // SAFETY: the entries live in `region`, which stays mapped until the ring is
        // closed (see Drop), and are initialised above.
        unsafe {
            recv.ring.submitter().register_buf_ring_with_flags(
                recv.region.base.as_ptr() as u64,
                buffers,
                BUF_GROUP,
                0,
            )?;
        }
        Ok(recv)
    }

    /// Waits up to `timeout` for at least one datagram (one `io_uring_enter`, which also
    /// submits a re-arm of the multishot receive if the kernel ended it), then reaps
    /// every completed receive. Returns how many datagrams are ready (0 on timeout).
    /// Buffers of the previous batch are recycled first if that was not done yet.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<usize> {
        self.recycle();
        if let Some(errno) = self.pending_error.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if !self.armed {
            let entry = opcode::RecvMsgMulti::new(Fd(self.fd), &*self.msghdr, BUF_GROUP)
                .build()
                .user_data(RECV_TAG);
            // SAFETY: the message header is boxed in self and the buffers it selects
            // live in `region`; both outlive the request, which Drop cancels before
            // the ring is closed and the memory released.
            self.armed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        }
        let ts = Timespec::from(timeout.min(MAX_WAIT));
        let args = SubmitArgs::new().timespec(&ts);
        if let Err(e) = self.ring.submitter().submit_with_args(1, &args)
            && !is_transient(&e)
        {
            return Err(e);
        }
        self.reap();
        if self.count == 0
            && let Some(errno) = self.pending_error.take()
        {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(self.count)
    }

    /// Moves every completion into the ready list.
    fn reap(&mut self) {
        let mut cqes = [const { MaybeUninit::<cqueue::Entry>::uninit() }; REAP_CHUNK];
        loop {
            let cqes = self.ring.completion().fill(&mut cqes);
            if cqes.is_empty() {
                break;
            }
            for cqe in cqes.iter() {
                if cqe.user_data() == RECV_TAG {
                    self.complete(cqe.result(), cqe.flags());
                }
            }
        }
        self.publish_tail();
    }

    /// Handles one completion of the multishot receive.
    fn complete(&mut self, res: i32, flags: u32) {
        if let Some(bid) = cqueue::buffer_select(flags)
            && bid < self.entries
        {
            let kept = res >= 0 && self.accept(bid, res as usize);
            if !kept {
                if res >= 0 {
                    self.dropped += 1;
                }
                self.give_back(bid);
            }
        }
        if !cqueue::more(flags) {
            // The kernel ended the multishot receive (out of buffers, or an error):
            // the next `recv` arms it again.
            self.armed = false;
            self.rearms += 1;
        }
        if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
            self.pending_error = Some(-res);
        }
    }

    /// Parses buffer `bid` holding `len` bytes of recvmsg output into the ready list.
    /// False when the datagram is unusable (truncated, unknown source address family).
    fn accept(&mut self, bid: u16, len: usize) -> bool {
        if self.count >= self.ready.len() {
            return false;
        }
        let start = self.bufs_offset + usize::from(bid) * RECV_BUF_LEN;
        // SAFETY: buffer `bid` lies inside `region`; the kernel handed it back with
        // this completion and does not touch it until it is given back.
        let buf = unsafe {
            std::slice::from_raw_parts(self.region.base.as_ptr().add(start), len.min(RECV_BUF_LEN))
        };
        let Ok(out) = RecvMsgOut::parse(buf, &self.msghdr) else {
            return false;
        };
        let payload = out.payload_data();
        if out.is_payload_truncated()
            || out.is_name_data_truncated()
            || out.incoming_payload_len() as usize != payload.len()
            || payload.len() > MAX_DATAGRAM
        {
            return false;
        }
        let Some(from) = parse_sockaddr(out.name_data()) else {
            return false;
        };
        self.ready[self.count] = Ready {
            from,
            bid,
            len: payload.len() as u16,
        };
        self.count += 1;
        true
    }

    /// The `i`-th ready datagram and its source; the payload can be rewritten in place.
    pub fn get_mut(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        if i >= self.count {
            return None;
        }
        let r = self.ready[i];
        let start = self.bufs_offset + usize::from(r.bid) * RECV_BUF_LEN + PAYLOAD_OFFSET;
        // SAFETY: the payload lies inside buffer `r.bid` of `region`, which the kernel
        // has handed over and does not touch before `recycle`; `&mut self` makes this
        // the only reference to it.
        let data = unsafe {
            std::slice::from_raw_parts_mut(self.region.base.as_ptr().add(start), usize::from(r.len))
        };
        Some((r.from, data))
    }

    /// Gives the buffers of the current batch back to the kernel. Call it once the
    /// batch has been processed; `recv` also does it.
    pub fn recycle(&mut self) {
        if self.count == 0 {
            return;
        }
        for i in 0..self.count {
            let bid = self.ready[i].bid;
            self.give_back(bid);
        }
        self.count = 0;
        self.publish_tail();
    }

    /// Times the kernel ended the multishot receive (and it was re-armed) since the
    /// last call.
    pub fn take_rearms(&mut self) -> u64 {
        std::mem::take(&mut self.rearms)
    }

    /// Datagrams discarded since the last call: larger than [`MAX_DATAGRAM`], or from
    /// an address that is neither IPv4 nor IPv6.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    fn ring_entries(&self) -> *mut BufRingEntry {
        self.region.base.as_ptr().cast()
    }

    /// Writes buffer `bid` into the next free slot of the buffer ring; the kernel sees
    /// it after `publish_tail`.
    fn give_back(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let addr = self.region.base.as_ptr() as u64
            + (self.bufs_offset + usize::from(bid) * RECV_BUF_LEN) as u64;
        // SAFETY: `slot` < entries, inside the ring part of `region`. At most
        // `entries` buffers exist and each is given back once per delivery, so this
        // slot is behind the kernel's head and is not being read.
        let entry = unsafe { &mut *self.ring_entries().add(slot) };
        entry.set_addr(addr);
        entry.set_len(RECV_BUF_LEN as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back so far visible to the kernel.
    fn publish_tail(&self) {
        // SAFETY: the ring base is page aligned and its first entry initialised; the
        // tail is a u16 the kernel only reads, so an atomic view of it is sound.
        let tail = unsafe { &*BufRingEntry::tail(self.ring_entries()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Cancels the multishot receive and waits until the kernel has ended it. False
    /// if that could not be confirmed.
    fn quiesce(&mut self) -> bool {
        if !self.armed {
            return true;
        }
        let cancel = opcode::AsyncCancel::new(RECV_TAG)
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: a cancellation references no memory.
        if unsafe { self.ring.submission().push(&cancel) }.is_err() {
            return false;
        }
        let ts = Timespec::from(Duration::from_millis(10));
        for _ in 0..100 {
            let args = SubmitArgs::new().timespec(&ts);
            if let Err(e) = self.ring.submitter().submit_with_args(1, &args)
                && !is_transient(&e)
            {
                return false;
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() == RECV_TAG && !cqueue::more(cqe.flags()) {
                    self.armed = false;
                }
            }
            if !self.armed {
                return true;
            }
        }
        false
    }
}

impl Drop for UringRecv<'_> {
    fn drop(&mut self) {
        let quiet = self.quiesce();
        if quiet {
            let _ = self.ring.submitter().unregister_buf_ring(BUF_GROUP);
        }
        // SAFETY: dropped exactly once, here; the ring is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if quiet {
            // SAFETY: no request can select or fill a buffer any more; dropped once.
            unsafe { ManuallyDrop::drop(&mut self.region) };
        } else {
            // The kernel may still write into the buffers: leave them mapped.
            tracing::warn!("io_uring receive not confirmed cancelled; its buffers are leaked");
        }
    }
}

/// The address the kernel wrote into the name field of a recvmsg output.
fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(name.get(..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddrV4::new(Ipv4Addr::from(ip), port).into())
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_ne_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope_id = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope_id).into())
        }
        _ => None,
    }
}

impl BatchRecv for UringRecv<'_> {
    fn recv_batch(&mut self, timeout: Duration) -> io::Result<usize> {
        self.recv(timeout)
    }

    fn datagram(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        self.get_mut(i)
    }

    fn recycle(&mut self) {
        UringRecv::recycle(self);
    }

    fn take_dropped(&mut self) -> u64 {
        UringRecv::take_dropped(self)
    }
}
