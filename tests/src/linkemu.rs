//! A userspace link emulator on TUN devices, for the delay this kernel cannot add
//! itself (it has no `netem`): each host namespace gets a TUN device ([`TUN_NAME`],
//! IPv4 only, MTU 1500), and one thread reads every IP packet its hosts send, holds
//! it for the one-way delay of its link, then writes it into the TUN device of the
//! host that owns the destination address.
//!
//! It owns the links between hosts and nothing else: no reordering, no jitter, no
//! rate limit; loss is optional per link ([`LinkEmulator::set_loss`]) and nftables
//! rules in the namespaces ([`crate::netns::Netns::add_loss`] on [`TUN_NAME`]) work
//! on these devices as on any other. Each link (an ordered pair of hosts) has a
//! bounded queue: a packet beyond it is dropped and counted, as a router would. Every
//! link counts what it carried ([`LinkEmulator::stats`]), so a test can tell how many
//! copies of a stream crossed it. The thread sleeps in `ppoll(2)` until a device is
//! readable or the next packet is due; dropping the emulator stops it and closes the
//! devices, which removes them.
//!
//! Needs root and `/dev/net/tun` ([`unavailable_reason`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::netns::Netns;

/// The TUN device the emulator makes in every host namespace.
pub const TUN_NAME: &str = "tun0";

/// The MTU of every emulated link.
pub const MTU: u32 = 1500;

/// Packets a link holds by default before it drops (see
/// [`LinkEmulatorBuilder::queue_limit`]).
pub const DEFAULT_QUEUE_LIMIT: usize = 8192;

/// Largest datagram read from a TUN device (an IP packet never exceeds it).
const READ_BUFFER: usize = 65_536;

/// Packets read from one device before the others get their turn.
const READ_BURST: usize = 64;

/// Loss is kept in parts per million.
const PPM: f64 = 1_000_000.0;

/// Why TUN devices cannot be made here, or `None` when they can.
pub fn unavailable_reason() -> Option<String> {
    if let Some(why) = crate::netns::unavailable_reason() {
        return Some(why);
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun (the tun driver)".into());
    }
    None
}

/// `true` when the emulator can run here; otherwise [`crate::require_or_skip`]
/// (a skip on a developer's machine, a panic in CI).
pub fn require() -> bool {
    match unavailable_reason() {
        None => true,
        Some(what) => crate::require_or_skip(&what),
    }
}

/// What one link (from one host to another) carried so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// IP packets delivered at the far end.
    pub packets: u64,
    /// Their bytes (IP headers included).
    pub bytes: u64,
    /// Of those, UDP packets...
    pub udp_packets: u64,
    /// ...and their bytes (IP headers included).
    pub udp_bytes: u64,
    /// Packets the emulator dropped for [`LinkEmulator::set_loss`].
    pub lost: u64,
    /// Packets dropped because the link's queue was full.
    pub overflowed: u64,
}

impl std::ops::Sub for LinkStats {
    type Output = LinkStats;

    /// What a link carried between two readings (`later - earlier`).
    fn sub(self, earlier: LinkStats) -> LinkStats {
        LinkStats {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
            udp_packets: self.udp_packets - earlier.udp_packets,
            udp_bytes: self.udp_bytes - earlier.udp_bytes,
            lost: self.lost - earlier.lost,
            overflowed: self.overflowed - earlier.overflowed,
        }
    }
}

/// Counters of one link, shared with the emulator thread.
#[derive(Debug, Default)]
struct LinkCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    udp_packets: AtomicU64,
    udp_bytes: AtomicU64,
    lost: AtomicU64,
    overflowed: AtomicU64,
    /// Random loss applied by the emulator, parts per million.
    loss_ppm: AtomicU32,
}

impl LinkCounters {
    fn snapshot(&self) -> LinkStats {
        LinkStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            udp_packets: self.udp_packets.load(Ordering::Relaxed),
            udp_bytes: self.udp_bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
        }
    }
}

/// State the test reads and the emulator thread writes.
#[derive(Debug)]
struct Shared {
    hosts: usize,
    /// `links[from * hosts + to]`.
    links: Vec<LinkCounters>,
    /// Packets for no host of the emulator (or not IPv4), dropped.
    unroutable: AtomicU64,
    /// Reads or writes of a device that failed (other than "try again").
    io_errors: AtomicU64,
}

impl Shared {
    fn link(&self, from: usize, to: usize) -> &LinkCounters {
        &self.links[from * self.hosts + to]
    }
}

/// One host: its TUN device, opened in its namespace, and its address.
#[derive(Debug)]
struct Host {
    addr: Ipv4Addr,
    tun: File,
    namespace: String,
}

/// Collects hosts and link settings, then [`start`](Self::start)s the emulator.
#[derive(Debug)]
pub struct LinkEmulatorBuilder {
    one_way_delay: Duration,
    queue_limit: usize,
    hosts: Vec<Host>,
    /// `(from, to, delay)` overriding `one_way_delay`.
    delays: Vec<(Ipv4Addr, Ipv4Addr, Duration)>,
}

impl LinkEmulatorBuilder {
    /// Makes [`TUN_NAME`] in `ns` (opened from inside it), gives it `cidr` (an
    /// IPv4 address with its prefix, e.g. `10.88.0.1/24`, whose subnet the other
    /// hosts share), MTU [`MTU`], and brings it up. Returns the address.
    pub fn host(&mut self, ns: &Netns, cidr: &str) -> anyhow::Result<Ipv4Addr> {
        let addr: Ipv4Addr = cidr
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("{cidr:?} is not IPv4 address/prefix"))?;
        if self.hosts.iter().any(|h| h.addr == addr) {
            bail!("{addr} is already a host of this emulator");
        }
        let tun = ns
            .enter(open_tun)
            .with_context(|| format!("opening {TUN_NAME} in {}", ns.name()))?;
        // IPv6 would only add router and listener chatter the emulator drops. The
        // thread in the namespace sees the namespace's own /proc/sys/net.
        let _ = ns.enter(|| {
            std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{TUN_NAME}/disable_ipv6"),
                "1",
            )
        });
        ns.ip(["addr", "add", cidr, "dev", TUN_NAME])?;
        ns.ip(["link", "set", TUN_NAME, "mtu", &MTU.to_string(), "up"])?;
        wait_lower_up(ns)?;
        self.hosts.push(Host {
            addr,
            tun,
            namespace: ns.name().to_owned(),
        });
        Ok(addr)
    }

    /// The one-way delay from `from` to `to`, in place of the default.
    pub fn link_delay(&mut self, from: Ipv4Addr, to: Ipv4Addr, delay: Duration) -> &mut Self {
        self.delays.push((from, to, delay));
        self
    }

    /// Packets a link may hold at once (default [`DEFAULT_QUEUE_LIMIT`]); more are
    /// dropped and counted as [`LinkStats::overflowed`].
    pub fn queue_limit(&mut self, packets: usize) -> &mut Self {
        self.queue_limit = packets.max(1);
        self
    }

    /// Starts the emulator thread.
    pub fn start(self) -> anyhow::Result<LinkEmulator> {
        let n = self.hosts.len();
        let mut delays = vec![self.one_way_delay; n * n];
        let index = |addr: Ipv4Addr| self.hosts.iter().position(|h| h.addr == addr);
        for &(from, to, delay) in &self.delays {
            let (Some(f), Some(t)) = (index(from), index(to)) else {
                bail!("link delay {from} → {to}: not both hosts of this emulator");
            };
            delays[f * n + t] = delay;
        }
        let shared = Arc::new(Shared {
            hosts: n,
            links: (0..n * n).map(|_| LinkCounters::default()).collect(),
            unroutable: AtomicU64::new(0),
            io_errors: AtomicU64::new(0),
        });
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("eventfd");
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let addrs: Vec<Ipv4Addr> = self.hosts.iter().map(|h| h.addr).collect();
        let namespaces = self.hosts.iter().map(|h| h.namespace.clone()).collect();
        let worker = Worker {
            queues: (0..n * n).map(|_| VecDeque::new()).collect(),
            delays: delays.clone(),
            queue_limit: self.queue_limit,
            addrs: addrs.clone(),
            tuns: self.hosts.into_iter().map(|h| h.tun).collect(),
            stop: stop.try_clone().context("eventfd clone")?,
            shared: shared.clone(),
            spare: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("linkemu".into())
            .spawn(move || worker.run())
            .context("spawning the emulator thread")?;
        Ok(LinkEmulator {
            addrs,
            namespaces,
            delays,
            shared,
            stop,
            thread: Some(thread),
        })
    }
}

/// The running emulator; stops its thread and removes its devices when dropped.
#[derive(Debug)]
pub struct LinkEmulator {
    addrs: Vec<Ipv4Addr>,
    namespaces: Vec<String>,
    delays: Vec<Duration>,
    shared: Arc<Shared>,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl LinkEmulator {
    /// A builder whose links all delay packets by `one_way_delay` in each
    /// direction (so a round trip takes twice as long).
    pub fn builder(one_way_delay: Duration) -> LinkEmulatorBuilder {
        LinkEmulatorBuilder {
            one_way_delay,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            hosts: Vec::new(),
            delays: Vec::new(),
        }
    }

    fn index(&self, addr: Ipv4Addr) -> usize {
        self.addrs
            .iter()
            .position(|a| *a == addr)
            .unwrap_or_else(|| panic!("{addr} is not a host of this emulator ({:?})", self.addrs))
    }

    /// The hosts' addresses, in the order they were added.
    pub fn hosts(&self) -> &[Ipv4Addr] {
        &self.addrs
    }

    /// The namespace a host's device lives in.
    pub fn namespace_of(&self, host: Ipv4Addr) -> &str {
        &self.namespaces[self.index(host)]
    }

    /// The one-way delay from `from` to `to`.
    pub fn delay(&self, from: Ipv4Addr, to: Ipv4Addr) -> Duration {
        self.delays[self.index(from) * self.addrs.len() + self.index(to)]
    }

    /// What the link from `from` to `to` carried so far.
    pub fn stats(&self, from: Ipv4Addr, to: Ipv4Addr) -> LinkStats {
        self.shared
            .link(self.index(from), self.index(to))
            .snapshot()
    }

    /// Drops `percent` % of the packets from `from` to `to` at random, in the
    /// emulator (0 for none). Loss with nftables in a namespace is the other way.
    pub fn set_loss(&self, from: Ipv4Addr, to: Ipv4Addr, percent: f64) {
        let ppm = (percent.clamp(0.0, 100.0) / 100.0 * PPM).round() as u32;
        self.shared
            .link(self.index(from), self.index(to))
            .loss_ppm
            .store(ppm, Ordering::Relaxed);
    }

    /// Packets dropped for want of a host to deliver them to (or not IPv4).
    pub fn unroutable(&self) -> u64 {
        self.shared.unroutable.load(Ordering::Relaxed)
    }

    /// Device reads and writes that failed.
    pub fn io_errors(&self) -> u64 {
        self.shared.io_errors.load(Ordering::Relaxed)
    }
}

impl Drop for LinkEmulator {
    fn drop(&mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: write(2) of 8 bytes from a live buffer to an eventfd we own.
        let _ = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the link emulator thread panicked");
        }
    }
}

/// A packet on its way.
#[derive(Debug)]
struct InFlight {
    due: Instant,
    data: Vec<u8>,
}

/// The emulator thread's own state.
#[derive(Debug)]
struct Worker {
    /// `queues[from * n + to]`, each in arrival (and so due) order.
    queues: Vec<VecDeque<InFlight>>,
    delays: Vec<Duration>,
    queue_limit: usize,
    addrs: Vec<Ipv4Addr>,
    tuns: Vec<File>,
    stop: OwnedFd,
    shared: Arc<Shared>,
    /// Buffers of delivered packets, for the next ones.
    spare: Vec<Vec<u8>>,
}

impl Worker {
    fn run(mut self) {
        let n = self.tuns.len();
        let mut fds: Vec<libc::pollfd> = self
            .tuns
            .iter()
            .map(|t| t.as_raw_fd())
            .chain([self.stop.as_raw_fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let next = self.deliver_due(Instant::now());
            let timeout = next.map(|due| {
                let wait = due.saturating_duration_since(Instant::now());
                libc::timespec {
                    tv_sec: wait.as_secs() as libc::time_t,
                    tv_nsec: wait.subsec_nanos() as libc::c_long,
                }
            });
            let timeout_ptr = timeout
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: ppoll(2) on `fds.len()` pollfds we own, with a timeout that is
            // null or points to a live timespec, and no signal mask.
            let rc = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    timeout_ptr,
                    std::ptr::null(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("ppoll: {e}");
            }
            if fds[n].revents != 0 {
                return;
            }
            for (from, pfd) in fds[..n].iter_mut().enumerate() {
                if pfd.revents & (libc::POLLERR | libc::POLLNVAL | libc::POLLHUP) != 0 {
                    // The device is gone: stop watching it.
                    self.shared.io_errors.fetch_add(1, Ordering::Relaxed);
                    pfd.fd = -1;
                    continue;
                }
                if pfd.revents & libc::POLLIN != 0 {
                    self.read_burst(from, &mut buf);
                }
            }
        }
    }

    /// Reads up to [`READ_BURST`] packets from host `from` and queues them.
    fn read_burst(&mut self, from: usize, buf: &mut [u8]) {
        for _ in 0..READ_BURST {
            let len = match (&self.tuns[from]).read(buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.shared.io_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let now = Instant::now();
            self.route(from, &buf[..len], now);
        }
    }

    /// Queues one packet read from host `from` on its link, or drops it.
    fn route(&mut self, from: usize, packet: &[u8], now: Instant) {
        let n = self.addrs.len();
        let to = ipv4_destination(packet).and_then(|dst| self.addrs.iter().position(|a| *a == dst));
        let Some(to) = to.filter(|&to| to != from) else {
            self.shared.unroutable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let link = from * n + to;
        let counters = self.shared.link(from, to);
        let loss = counters.loss_ppm.load(Ordering::Relaxed);
        if loss > 0 && rand::random_range(0..1_000_000u32) < loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.queues[link].len() >= self.queue_limit {
            counters.overflowed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(packet);
        self.queues[link].push_back(InFlight {
            due: now + self.delays[link],
            data,
        });
    }

    /// Writes every packet whose time has come; returns when the next one is due.
    fn deliver_due(&mut self, now: Instant) -> Option<Instant> {
        let n = self.addrs.len();
        let mut next: Option<Instant> = None;
        for link in 0..self.queues.len() {
            let (from, to) = (link / n, link % n);
            while let Some(head) = self.queues[link].front() {
                if head.due > now {
                    next = Some(next.map_or(head.due, |t| t.min(head.due)));
                    break;
                }
                let Some(packet) = self.queues[link].pop_front() else {
                    break;
                };
                // Counted before the write, so that a reader woken by the packet
                // finds it counted; taken back should the write fail.
                let counters = self.shared.link(from, to);
                let len = packet.data.len() as u64;
                let udp = packet.data.get(9) == Some(&(libc::IPPROTO_UDP as u8));
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(len, Ordering::Relaxed);
                if udp {
                    counters.udp_packets.fetch_add(1, Ordering::Relaxed);
                    counters.udp_bytes.fetch_add(len, Ordering::Relaxed);
                }
                if (&self.tuns[to]).write(&packet.data).is_err() {
                    self.shared.io_errors.fetch_add(1, Ordering::Relaxed);
                    counters.packets.fetch_sub(1, Ordering::Relaxed);
                    counters.bytes.fetch_sub(len, Ordering::Relaxed);
                    if udp {
                        counters.udp_packets.fetch_sub(1, Ordering::Relaxed);
                        counters.udp_bytes.fetch_sub(len, Ordering::Relaxed);
                    }
                }
                self.spare.push(packet.data);
            }
        }
        next
    }
}

/// Waits (at most 5 s) until [`TUN_NAME`] in `ns` is up with its queue attached. A
/// TUN device reports no carrier state (`state UNKNOWN`), so the flags tell.
fn wait_lower_up(ns: &Netns) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let link = ns.ip(["-o", "link", "show", "dev", TUN_NAME])?;
        if link.contains("LOWER_UP") && !link.contains("qdisc noop") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{TUN_NAME} in {} is not up after 5 s: {link}", ns.name());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The destination of an IPv4 packet; `None` for anything else.
fn ipv4_destination(packet: &[u8]) -> Option<Ipv4Addr> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let dst: [u8; 4] = packet[16..20].try_into().ok()?;
    Some(Ipv4Addr::from(dst))
}

/// `struct ifreq` as `TUNSETIFF` reads it: a name and flags, padded to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `/dev/net/tun` and makes [`TUN_NAME`] (`IFF_TUN | IFF_NO_PI`: bare IP
/// packets), non-blocking, in the calling thread's network namespace.
fn open_tun() -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .context("opening /dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..TUN_NAME.len()].copy_from_slice(TUN_NAME.as_bytes());
    // SAFETY: TUNSETIFF reads (and writes back) one `struct ifreq`, which `req`
    // lays out; the descriptor is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error()).context("TUNSETIFF");
    }
    Ok(file)
}

#[cfg(test)]
mod unit {
    use std::net::{SocketAddr, UdpSocket};

    use super::*;
    use crate::netns::grow_receive_buffer;

    const A: &str = "10.98.0.1";
    const B: &str = "10.98.0.2";
    const C: &str = "10.98.0.3";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Three hosts joined by the emulator, `delay` one way.
    fn three(delay: Duration, queue_limit: usize) -> (LinkEmulator, [Netns; 3]) {
        let hosts = [
            Netns::new("ea").unwrap(),
            Netns::new("eb").unwrap(),
            Netns::new("ec").unwrap(),
        ];
        let mut builder = LinkEmulator::builder(delay);
        builder.queue_limit(queue_limit);
        for (ns, addr) in hosts.iter().zip([A, B, C]) {
            builder.host(ns, &format!("{addr}/24")).unwrap();
        }
        (builder.start().unwrap(), hosts)
    }

    fn socket(ns: &Netns, addr: &str) -> UdpSocket {
        let s = ns.udp_socket(format!("{addr}:0").parse().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        grow_receive_buffer(&s, 4 << 20).unwrap();
        s
    }

    fn drain(rx: &UdpSocket) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while rx.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn delays_each_way_and_counts_per_link() {
        if !require() {
            return;
        }
        let delay = Duration::from_millis(20);
        let (emu, hosts) = three(delay, DEFAULT_QUEUE_LIMIT);
        let a = socket(&hosts[0], A);
        let b = socket(&hosts[1], B);
        let c = socket(&hosts[2], C);
        let b_addr: SocketAddr = b.local_addr().unwrap();
        // Round trips A → B → A: each at least twice the one-way delay.
        let mut rtts = Vec::new();
        let mut buf = [0u8; 256];
        for i in 0..20u32 {
            let start = Instant::now();
            a.send_to(&i.to_be_bytes(), b_addr).unwrap();
            let (len, from) = b.recv_from(&mut buf).unwrap();
            let one_way = start.elapsed();
            assert!(one_way >= delay, "A → B took {one_way:?}");
            b.send_to(&buf[..len], from).unwrap();
            let (len, _) = a.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &i.to_be_bytes());
            rtts.push(start.elapsed());
        }
        rtts.sort();
        let min = rtts[0];
        assert!(min >= 2 * delay, "round trips {rtts:?}");
        eprintln!(
            "round trips through the emulator at {delay:?} each way: min {min:?}, median {:?}, max {:?}",
            rtts[rtts.len() / 2],
            rtts[rtts.len() - 1]
        );
        // 20 datagrams of 4 bytes each way: 20 + 8 + 4 bytes of IP packet each.
        let ab = emu.stats(ip(A), ip(B));
        let ba = emu.stats(ip(B), ip(A));
        for s in [ab, ba] {
            assert_eq!((s.udp_packets, s.udp_bytes), (20, 20 * 32), "{s:?}");
            assert_eq!((s.lost, s.overflowed), (0, 0));
        }
        // A → C goes to C only.
        let before = emu.stats(ip(A), ip(B));
        for i in 0..10u32 {
            a.send_to(&i.to_be_bytes(), c.local_addr().unwrap())
                .unwrap();
        }
        assert_eq!(drain(&c), 10);
        assert_eq!(emu.stats(ip(A), ip(C)).udp_packets, 10);
        assert_eq!(emu.stats(ip(A), ip(B)) - before, LinkStats::default());
        assert_eq!(emu.io_errors(), 0);
        assert_eq!(emu.delay(ip(A), ip(B)), delay);
        assert!(emu.namespace_of(ip(B)).ends_with("-eb"));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        if !require() {
            return;
        }
        let (emu, hosts) = three(Duration::from_millis(300), 10);
        let a = socket(&hosts[0], A);
        let b = socket(&hosts[1], B);
        // A burst far shorter than the delay: the first ten wait, the rest drop.
        for i in 0..100u32 {
            a.send_to(&i.to_be_bytes(), b.local_addr().unwrap())
                .unwrap();
        }
        assert_eq!(drain(&b), 10);
        let s = emu.stats(ip(A), ip(B));
        assert_eq!((s.udp_packets, s.overflowed), (10, 90), "{s:?}");
    }

    #[test]
    fn loss_in_the_emulator_and_with_nftables() {
        if !require() || !crate::require(crate::command_available("nft"), "nft (nftables)") {
            return;
        }
        let (emu, hosts) = three(Duration::from_millis(2), DEFAULT_QUEUE_LIMIT);
        let a = socket(&hosts[0], A);
        let b = socket(&hosts[1], B);
        let dest = b.local_addr().unwrap();
        let send = |n: u32| {
            for i in 0..n {
                a.send_to(&i.to_be_bytes(), dest).unwrap();
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        emu.set_loss(ip(A), ip(B), 30.0);
        send(1000);
        let got = drain(&b);
        assert!((600..=800).contains(&got), "{got} of 1000 with 30 % loss");
        assert_eq!(emu.stats(ip(A), ip(B)).lost, 1000 - got as u64);
        emu.set_loss(ip(A), ip(B), 0.0);
        // nftables on the receiving host's device: the emulator delivers every
        // packet, the host's ingress hook drops some.
        hosts[1].add_ingress_loss(TUN_NAME, 30).unwrap();
        let before = emu.stats(ip(A), ip(B));
        send(1000);
        let got = drain(&b);
        assert!(
            (600..=800).contains(&got),
            "{got} of 1000 with 30 % nft loss"
        );
        assert_eq!((emu.stats(ip(A), ip(B)) - before).udp_packets, 1000);
        hosts[1].clear_loss().unwrap();
        // And on the sender's egress: the emulator never sees what was dropped.
        hosts[0].add_loss(TUN_NAME, 50).unwrap();
        let before = emu.stats(ip(A), ip(B));
        send(1000);
        let got = drain(&b);
        assert!(
            (400..=600).contains(&got),
            "{got} of 1000 with 50 % nft loss"
        );
        assert_eq!(
            (emu.stats(ip(A), ip(B)) - before).udp_packets,
            got as u64,
            "what left A is what B got"
        );
    }

    #[test]
    fn ipv4_destinations() {
        let mut p = [0u8; 20];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(ipv4_destination(&p), Some(Ipv4Addr::new(10, 1, 2, 3)));
        p[0] = 0x60;
        assert_eq!(ipv4_destination(&p), None);
        assert_eq!(ipv4_destination(&p[..10]), None);
    }
}
