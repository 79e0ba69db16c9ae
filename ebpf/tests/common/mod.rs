//! Helpers of the eBPF tests: the skip-or-fail rule, one-at-a-time locking,
//! network namespaces that clean up after themselves, and packet crafting.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cascade_ebpf::{Counter, EbpfFastPath, Unavailable};

#[path = "../../../tests/src/skip.rs"]
mod skip;

/// The tests share kernel state (programs, namespaces): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether this test can load BPF here. When it cannot, [`skip::skip`]: the test
/// fails in CI and otherwise prints the skip marker and returns.
pub fn bpf_usable(test: &str) -> bool {
    let reason = match cascade_ebpf::probe() {
        Ok(()) => return true,
        // These programs need no BTF: only a missing BTF does not stop them.
        Err(Unavailable::NoBtf) if cascade_ebpf::programs_embedded() && is_root() => {
            return true;
        }
        Err(reason) => reason.to_string(),
    };
    skip_or_fail(test, &reason)
}

/// Whether this test can also build network namespaces (root and `ip`).
pub fn netns_usable(test: &str) -> bool {
    if !bpf_usable(test) {
        return false;
    }
    if !is_root() {
        return skip_or_fail(test, "network namespaces need root");
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => true,
        _ => skip_or_fail(test, "the `ip` command (iproute2) is missing"),
    }
}

fn skip_or_fail(test: &str, reason: &str) -> bool {
    skip::skip(&format!("usable BPF for {test}: {reason}"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace made by a test; deleted on drop, also when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("cascade-t{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`; panics on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Runs `f` on a thread inside this namespace. Sockets and links made there
    /// stay in the namespace wherever they are used afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&self.name);
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn enter(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("open netns {name}: {e}"));
    // SAFETY: setns on a namespace file descriptor; affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", io::Error::last_os_error());
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair between two namespaces, with fixed MACs and /24 addresses, up.
pub fn veth(a: (&Netns, &str, &str, &str), b: (&Netns, &str, &str, &str)) {
    let (ns_a, if_a, mac_a, addr_a) = a;
    let (ns_b, if_b, mac_b, addr_b) = b;
    ns_a.ip(&[
        "link", "add", if_a, "address", mac_a, "type", "veth", "peer", "name", if_b, "address",
        mac_b, "netns", &ns_b.name,
    ]);
    ns_a.ip(&["addr", "add", addr_a, "dev", if_a]);
    ns_b.ip(&["addr", "add", addr_b, "dev", if_b]);
    ns_a.ip(&["link", "set", if_a, "up"]);
    ns_b.ip(&["link", "set", if_b, "up"]);
}

pub fn parse_mac(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (byte, part) in out.iter_mut().zip(mac.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    out
}

pub fn udp_socket(addr: &str) -> UdpSocket {
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket
}

/// A UDP socket with `SO_REUSEPORT`, bound to `addr`.
pub fn reuseport_socket(addr: SocketAddr) -> UdpSocket {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); checked below.
    let raw = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let socket = unsafe { UdpSocket::from_raw_fd(raw) };
    set_int_option(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    let rc = unsafe { libc::bind(raw, (&raw const storage).cast(), len) };
    assert_eq!(rc, 0, "bind {addr}: {}", io::Error::last_os_error());
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket
}

pub fn set_int_option(fd: i32, level: i32, name: i32, value: i32) {
    // SAFETY: `value` is an int, as these options expect.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt {name}: {}", io::Error::last_os_error());
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (storage, size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (storage, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// Reads datagrams until `socket` stays quiet for its read timeout.
pub fn drain(socket: &UdpSocket) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        got.push((buf[..n].to_vec(), from));
    }
    got
}

/// An `AF_PACKET` socket on `ifname` (in the calling thread's namespace) that
/// sees every frame, for sending crafted frames and checking received ones.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

impl PacketSocket {
    pub fn open(ifname: &str) -> Self {
        let c_name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: `c_name` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {ifname}");
        // SAFETY: plain socket(2); checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        assert!(raw >= 0, "packet socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = link_addr(ifindex, [0; 6]);
        // SAFETY: `addr` is a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                raw,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind packet socket: {}", io::Error::last_os_error());
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 300_000,
        };
        // SAFETY: a valid timeval of the right length.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        Self { fd, ifindex }
    }

    pub fn send(&self, frame: &[u8]) {
        let addr = link_addr(self.ifindex, frame[..6].try_into().unwrap());
        // SAFETY: `frame` and `addr` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(n as usize, frame.len(), "{}", io::Error::last_os_error());
    }

    /// Incoming frames until the socket stays quiet for its timeout.
    pub fn drain_incoming(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: `buf` and `from` are valid for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                return frames;
            }
            if from.sll_pkttype != PACKET_OUTGOING {
                frames.push(buf[..n as usize].to_vec());
            }
        }
    }
}

fn link_addr(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&mac);
    addr
}

/// Counter values, to compare before and after.
pub fn snapshot(fast_path: &EbpfFastPath) -> Vec<u64> {
    Counter::ALL
        .iter()
        .map(|&c| fast_path.counter(c).expect("read counter"))
        .collect()
}

/// Counters that moved between two snapshots, with how much.
pub fn moved(before: &[u64], after: &[u64]) -> Vec<(Counter, u64)> {
    Counter::ALL
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| a != b)
        .map(|(&c, (b, a))| (c, a - b))
        .collect()
}

// ---------------------------------------------------------------------------
// Packet crafting and checking
// ---------------------------------------------------------------------------

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn add_bytes(mut sum: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn pseudo_header_sum(src: IpAddr, dst: IpAddr, udp_len: usize) -> u32 {
    let mut sum = add_bytes(0, &ip_bytes(src));
    sum = add_bytes(sum, &ip_bytes(dst));
    sum + 17 + udp_len as u32
}

/// A UDP datagram with a correct checksum.
pub fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut udp = Vec::with_capacity(len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let sum = add_bytes(pseudo_header_sum(src.ip(), dst.ip(), len), &udp);
    let mut check = !fold(sum);
    if check == 0 {
        check = 0xffff;
    }
    udp[6..8].copy_from_slice(&check.to_be_bytes());
    udp
}

/// An IP header (with its checksum for IPv4) for `payload` of protocol `proto`.
pub fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, payload_len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + payload_len) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let check = !fold(add_bytes(0, &h));
            h[10..12].copy_from_slice(&check.to_be_bytes());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload_len as u16).to_be_bytes());
            h.extend_from_slice(&[proto, 64]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h
        }
        _ => panic!("mixed address families"),
    }
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn ethertype(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { 0x0800 } else { 0x86dd }
}

/// A whole Ethernet + IP + UDP frame with correct checksums.
pub fn udp_frame_between(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let udp = udp_datagram(src, dst, payload);
    let mut ip = ip_header(src.ip(), dst.ip(), 17, udp.len());
    ip.extend_from_slice(&udp);
    ethernet(dst_mac, src_mac, ethertype(src.ip()), &ip)
}

pub fn udp_frame(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    udp_frame_between(
        DST_MAC,
        SRC_MAC,
        src.parse().unwrap(),
        dst.parse().unwrap(),
        payload,
    )
}

/// An SRTP-looking payload: RTP version 2, then `tag` and a sequence number.
pub fn rtp_payload(tag: u8, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, tag]);
    p.extend_from_slice(&[0xab; 40]);
    p
}

/// A STUN binding request header (with the magic cookie) and some padding.
pub fn stun_payload() -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    p.extend_from_slice(&[7; 12]);
    p
}

/// A DTLS handshake record header.
pub fn dtls_payload() -> Vec<u8> {
    let mut p = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
    p.extend_from_slice(&[1; 32]);
    p
}

/// A received IPv4 or IPv6 UDP frame, parsed.
#[derive(Debug)]
pub struct ReceivedUdp {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
    /// The IPv4 header checksum verifies (always true for IPv6, which has none).
    pub ip_checksum_ok: bool,
    /// The UDP checksum verifies over the whole datagram.
    pub udp_checksum_full: bool,
    /// The UDP checksum field holds the pseudo-header seed of a checksum the
    /// sender's device was to finish (`CHECKSUM_PARTIAL` on veth).
    pub udp_checksum_partial: bool,
}

/// Parses an Ethernet frame carrying UDP directly over IPv4 or IPv6.
pub fn parse_udp(frame: &[u8]) -> Option<ReceivedUdp> {
    let ip = frame.get(14..)?;
    let (src_ip, dst_ip, ip_checksum_ok, udp) = match frame.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = usize::from(*ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 17 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let src = IpAddr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
            let ok = fold(add_bytes(0, ip.get(..ihl)?)) == 0xffff;
            (src, dst, ok, ip.get(ihl..total.min(ip.len()))?)
        }
        [0x86, 0xdd] => {
            if *ip.get(6)? != 17 {
                return None;
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
            (src, dst, true, ip.get(40..)?)
        }
        _ => return None,
    };
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    let udp = udp.get(..udp_len)?;
    let field = u16::from_be_bytes([udp[6], udp[7]]);
    let pseudo = pseudo_header_sum(src_ip, dst_ip, udp.len());
    Some(ReceivedUdp {
        dst_mac: frame[0..6].try_into().ok()?,
        src_mac: frame[6..12].try_into().ok()?,
        src: SocketAddr::new(src_ip, u16::from_be_bytes([udp[0], udp[1]])),
        dst: SocketAddr::new(dst_ip, u16::from_be_bytes([udp[2], udp[3]])),
        payload: udp[8..].to_vec(),
        ip_checksum_ok,
        udp_checksum_full: field != 0 && fold(add_bytes(pseudo, udp)) == 0xffff,
        udp_checksum_partial: field == fold(pseudo),
    })
}
