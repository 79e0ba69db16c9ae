//! Route, link and neighbour queries over rtnetlink: where a fan-out clone leaves
//! and with which MAC addresses. Read-only; it never changes the tables. The
//! socket belongs to the network namespace of the thread that opened it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_GETLINK: u16 = 18;
const RTM_GETROUTE: u16 = 26;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;

const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;
const IFLA_ADDRESS: u16 = 1;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;

/// `ifi_type` of Ethernet-like devices (veth, NICs, bridges).
const ARPHRD_ETHER: u16 = 1;

/// The answer of `ip route get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) oif: u32,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) prefsrc: Option<IpAddr>,
}

/// What the fan-out needs of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// The hardware address, for Ethernet-like devices.
    pub(crate) mac: Option<[u8; 6]>,
}

#[derive(Debug)]
pub(crate) struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

impl RouteSocket {
    pub(crate) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval and the length matches it.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, seq: 0 })
    }

    /// `ip route get <dst> [from <src>]`.
    pub(crate) fn route_get(&mut self, dst: IpAddr, src: Option<IpAddr>) -> io::Result<Route> {
        let (family, bits) = match dst {
            IpAddr::V4(_) => (libc::AF_INET as u8, 32),
            IpAddr::V6(_) => (libc::AF_INET6 as u8, 128),
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut body = vec![
            family,
            bits,
            if src.is_some() { bits } else { 0 },
            0,
            0,
            0,
            0,
            0,
        ];
        body.extend_from_slice(&0u32.to_ne_bytes());
        push_attr(&mut body, RTA_DST, &ip_bytes(dst));
        if let Some(src) = src {
            push_attr(&mut body, RTA_SRC, &ip_bytes(src));
        }
        let replies = self.request(RTM_GETROUTE, NLM_F_REQUEST, &body)?;
        let reply = replies
            .first()
            .ok_or_else(|| io::Error::other("empty route reply"))?;
        let mut route = Route {
            oif: 0,
            gateway: None,
            prefsrc: None,
        };
        for (kind, value) in attrs(reply, 12) {
            match kind {
                RTA_OIF if value.len() >= 4 => {
                    route.oif = u32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
                }
                RTA_GATEWAY => route.gateway = parse_ip(value),
                RTA_VIA if value.len() > 2 => route.gateway = parse_ip(&value[2..]),
                RTA_PREFSRC => route.prefsrc = parse_ip(value),
                _ => {}
            }
        }
        if route.oif == 0 {
            return Err(io::Error::other("route has no output interface"));
        }
        Ok(route)
    }

    /// `ip link show <ifindex>`, reduced to its hardware address.
    pub(crate) fn link(&mut self, ifindex: u32) -> io::Result<Link> {
        // struct ifinfomsg: family, pad, type, index, flags, change.
        let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        let replies = self.request(RTM_GETLINK, NLM_F_REQUEST, &body)?;
        let reply = replies
            .first()
            .ok_or_else(|| io::Error::other("empty link reply"))?;
        if reply.len() < 16 {
            return Err(io::Error::other("short link reply"));
        }
        let kind = u16::from_ne_bytes([reply[2], reply[3]]);
        let mac = attrs(reply, 16)
            .find(|(k, _)| *k == IFLA_ADDRESS)
            .and_then(|(_, v)| <[u8; 6]>::try_from(v).ok())
            .filter(|_| kind == ARPHRD_ETHER);
        Ok(Link { mac })
    }

    /// The resolved hardware address of `addr` on `ifindex`, if the kernel has one.
    pub(crate) fn neighbour(&mut self, ifindex: u32, addr: IpAddr) -> io::Result<Option<[u8; 6]>> {
        let family = match addr {
            IpAddr::V4(_) => libc::AF_INET as u8,
            IpAddr::V6(_) => libc::AF_INET6 as u8,
        };
        // struct ndmsg: family, pad1, pad2, ifindex, state, flags, type.
        let mut body = vec![family, 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&[0, 0, 0, 0]);
        let replies = self.request(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, &body)?;
        for reply in &replies {
            if reply.len() < 12 {
                continue;
            }
            let index = i32::from_ne_bytes([reply[4], reply[5], reply[6], reply[7]]);
            let state = u16::from_ne_bytes([reply[8], reply[9]]);
            if index as u32 != ifindex || state == 0 || state & (NUD_INCOMPLETE | NUD_FAILED) != 0 {
                continue;
            }
            let mut dst = None;
            let mut lladdr = None;
            for (kind, value) in attrs(reply, 12) {
                match kind {
                    NDA_DST => dst = parse_ip(value),
                    NDA_LLADDR => lladdr = <[u8; 6]>::try_from(value).ok(),
                    _ => {}
                }
            }
            if dst == Some(addr)
                && let Some(mac) = lladdr
            {
                return Ok(Some(mac));
            }
        }
        Ok(None)
    }

    /// Sends one request and collects the payloads of its replies (all parts of
    /// a dump, or the single answer).
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(NLMSG_HDR_LEN + body.len());
        msg.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);

        // SAFETY: an all-zero sockaddr_nl addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` and `kernel` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDR_LEN {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if len < NLMSG_HDR_LEN || len > rest.len() {
                    return Err(io::Error::other("malformed netlink message"));
                }
                let msg_kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let msg_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                let payload = &rest[NLMSG_HDR_LEN..len];
                rest = &rest[align4(len).min(rest.len())..];
                if msg_seq != seq {
                    continue;
                }
                match msg_kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EIO);
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => {
                        out.push(payload.to_vec());
                        if !dump {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + align4(len) - len, 0);
}

/// The route attributes after a fixed header of `header` bytes.
fn attrs(payload: &[u8], header: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = payload.get(header..).unwrap_or_default();
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = &rest[4..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((kind, value))
    })
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn parse_ip(value: &[u8]) -> Option<IpAddr> {
    match value.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(value).ok()?,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut buf = vec![0u8; 12];
        push_attr(&mut buf, RTA_DST, &[10, 0, 0, 1]);
        push_attr(&mut buf, RTA_OIF, &[7, 0, 0]);
        push_attr(&mut buf, RTA_PREFSRC, &[10, 0, 0, 2]);
        let got: Vec<_> = attrs(&buf, 12).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (RTA_DST, &[10u8, 0, 0, 1][..]));
        assert_eq!(got[1], (RTA_OIF, &[7u8, 0, 0][..]));
        assert_eq!(
            parse_ip(got[2].1),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))
        );
    }

    #[test]
    fn loopback_route() {
        // Every namespace routes 127.0.0.1 through `lo` once it is up; this only
        // reads the routing table.
        let Ok(mut socket) = RouteSocket::open() else {
            return;
        };
        if let Ok(route) = socket.route_get(IpAddr::V4(Ipv4Addr::LOCALHOST), None) {
            assert!(route.oif > 0);
        }
    }
}
