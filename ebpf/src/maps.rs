//! The layouts of the maps the kernel programs share with this loader.
//!
//! Each struct mirrors one in `bpf/cascade_maps.h`, field for field; the sizes
//! are asserted on both sides. No `bool` and no implicit padding (explicit `pad`
//! fields stay zero), and addresses and ports are in network byte order, so the
//! programs build keys by copying bytes straight out of a packet. Nothing here
//! talks to the kernel: the loader in this crate does.

use std::net::{IpAddr, SocketAddr};

/// `family` of an IPv4 key or entry.
pub const FAMILY_V4: u8 = 4;
/// `family` of an IPv6 key or entry.
pub const FAMILY_V6: u8 = 6;
/// Most cascade peers one source is cloned to by the TC fan-out.
pub const MAX_FANOUT_PEERS: usize = 32;
/// Most sockets a steered `SO_REUSEPORT` group can hold.
pub const MAX_WORKERS: u32 = 256;
/// [`FanoutEntry::flags`]: the original packet also goes up to userspace.
pub const FANOUT_LOCAL_SUBSCRIBERS: u32 = 1;

/// A UDP 5-tuple as seen from this server: `peer` is the remote end (the source
/// of an incoming packet), `local` is ours. An IPv4 address fills the first 4
/// of its 16 bytes.
///
/// `ALLOW` is keyed by the whole tuple; an all-zero `local_addr` matches any local
/// address on `local_port`. `STEER` and `FANOUT` are keyed by the peer alone
/// (zero local half), see [`FlowKey::peer`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub peer_addr: [u8; 16],
    pub local_addr: [u8; 16],
    /// Network byte order.
    pub peer_port: u16,
    /// Network byte order.
    pub local_port: u16,
    pub family: u8,
    pub pad: [u8; 3],
}

impl FlowKey {
    /// The key of a 5-tuple. An unspecified local address (`0.0.0.0`, `::`)
    /// matches any local address; the families must agree otherwise (the caller
    /// checks, see [`canonical`]).
    pub fn tuple(peer: SocketAddr, local: SocketAddr) -> Self {
        let peer = canonical(peer);
        let local = canonical(local);
        let (family, peer_addr) = address_bytes(peer.ip());
        let local_addr = if local.ip().is_unspecified() {
            [0; 16]
        } else {
            address_bytes(local.ip()).1
        };
        Self {
            peer_addr,
            local_addr,
            peer_port: peer.port().to_be(),
            local_port: local.port().to_be(),
            family,
            pad: [0; 3],
        }
    }

    /// The key of a peer alone, as `STEER` and `FANOUT` use it.
    pub fn peer(peer: SocketAddr) -> Self {
        let peer = canonical(peer);
        let (family, peer_addr) = address_bytes(peer.ip());
        Self {
            peer_addr,
            peer_port: peer.port().to_be(),
            family,
            ..Self::default()
        }
    }
}

/// Key of the per-source STUN budget: a source address alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub pad: [u8; 3],
}

/// A source's STUN token bucket; `tokens` counts packets times 10^9.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StunBucket {
    pub tokens: u64,
    pub last_ns: u64,
}

/// `CONFIG[0]`: what the XDP guard and the TC fan-out judge.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigValue {
    /// Network byte order; 0 means not configured (everything passes).
    pub media_port: u16,
    pub pad: u16,
    /// STUN packets per second per source address; 0: no limit.
    pub stun_rate: u32,
    /// STUN bucket size, in packets.
    pub stun_burst: u32,
    /// Reserved, zero.
    pub flags: u32,
}

/// One cascade peer: where a clone goes and which addresses it carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutTarget {
    /// New destination address.
    pub peer_addr: [u8; 16],
    /// New source address (ours).
    pub local_addr: [u8; 16],
    /// New destination MAC (the next hop).
    pub peer_mac: [u8; 6],
    /// New source MAC (the egress interface).
    pub local_mac: [u8; 6],
    /// Network byte order.
    pub peer_port: u16,
    /// Network byte order.
    pub local_port: u16,
    /// Egress interface.
    pub ifindex: u32,
    pub family: u8,
    pub pad: [u8; 3],
}

/// `FANOUT` value: the peers a source's SRTP/SRTCP is cloned to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutEntry {
    pub peers: [FanoutTarget; MAX_FANOUT_PEERS],
    pub count: u32,
    /// [`FANOUT_LOCAL_SUBSCRIBERS`] or 0.
    pub flags: u32,
}

impl Default for FanoutEntry {
    fn default() -> Self {
        Self {
            peers: [FanoutTarget::default(); MAX_FANOUT_PEERS],
            count: 0,
            flags: 0,
        }
    }
}

/// Indices of the per-CPU `COUNTERS` array (`enum cascade_counter` in C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Counter {
    /// Guard: not IPv4/IPv6 UDP (or an IP fragment); passed.
    GuardPassNotUdp = 0,
    /// Guard: cut before the UDP destination port; passed (cannot tell whose).
    GuardPassUnparsed,
    /// Guard: UDP to another port; passed.
    GuardPassOtherPort,
    /// Guard: STUN within its source's budget (or from an allowed 5-tuple).
    GuardStunPass,
    /// Guard: STUN over its source's budget; dropped.
    GuardStunOverBudget,
    /// Guard: DTLS from an allowed 5-tuple.
    GuardDtlsAllowed,
    /// Guard: DTLS from a 5-tuple that passed no ICE check; dropped.
    GuardDtlsUnknownSource,
    /// Guard: SRTP/SRTCP from an allowed 5-tuple.
    GuardMediaAllowed,
    /// Guard: SRTP/SRTCP from a 5-tuple that passed no ICE check; dropped.
    GuardMediaUnknownSource,
    /// Guard: a first byte no protocol of ours uses, or a malformed STUN header; dropped.
    GuardGarbage,
    /// Guard: to the media port but the UDP header or payload is cut; dropped.
    GuardTruncated,
    /// Fan-out: clones sent to cascade peers.
    FanoutClones,
    /// Fan-out: clones that could not be rewritten or sent.
    FanoutCloneErrors,
    /// Fan-out: originals passed on to local subscribers.
    FanoutToUserspace,
    /// Fan-out: originals consumed (no local subscribers).
    FanoutConsumed,
    /// Fan-out: packets of a fan-out source left to userspace (VLAN tag, GRO batch).
    FanoutSkipped,
    /// Steering: a packet sent to the worker its peer is steered to.
    SteerSelected,
    /// Steering: a packet of an unsteered peer, left to the kernel's hash.
    SteerHashed,
    /// Steering: the steered worker's socket is missing; hashed instead.
    SteerFailed,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 19] = [
        Counter::GuardPassNotUdp,
        Counter::GuardPassUnparsed,
        Counter::GuardPassOtherPort,
        Counter::GuardStunPass,
        Counter::GuardStunOverBudget,
        Counter::GuardDtlsAllowed,
        Counter::GuardDtlsUnknownSource,
        Counter::GuardMediaAllowed,
        Counter::GuardMediaUnknownSource,
        Counter::GuardGarbage,
        Counter::GuardTruncated,
        Counter::FanoutClones,
        Counter::FanoutCloneErrors,
        Counter::FanoutToUserspace,
        Counter::FanoutConsumed,
        Counter::FanoutSkipped,
        Counter::SteerSelected,
        Counter::SteerHashed,
        Counter::SteerFailed,
    ];

    /// The stable label `/metrics` shows.
    pub const fn label(self) -> &'static str {
        match self {
            Counter::GuardPassNotUdp => "guard_pass_not_udp",
            Counter::GuardPassUnparsed => "guard_pass_unparsed",
            Counter::GuardPassOtherPort => "guard_pass_other_port",
            Counter::GuardStunPass => "guard_stun_pass",
            Counter::GuardStunOverBudget => "guard_stun_over_budget",
            Counter::GuardDtlsAllowed => "guard_dtls_allowed",
            Counter::GuardDtlsUnknownSource => "guard_dtls_unknown_source",
            Counter::GuardMediaAllowed => "guard_media_allowed",
            Counter::GuardMediaUnknownSource => "guard_media_unknown_source",
            Counter::GuardGarbage => "guard_garbage",
            Counter::GuardTruncated => "guard_truncated",
            Counter::FanoutClones => "fanout_clones",
            Counter::FanoutCloneErrors => "fanout_clone_errors",
            Counter::FanoutToUserspace => "fanout_to_userspace",
            Counter::FanoutConsumed => "fanout_consumed",
            Counter::FanoutSkipped => "fanout_skipped",
            Counter::SteerSelected => "steer_selected",
            Counter::SteerHashed => "steer_hashed",
            Counter::SteerFailed => "steer_failed",
        }
    }

    /// Whether the guard drops the packets this counter counts.
    pub const fn is_guard_drop(self) -> bool {
        matches!(
            self,
            Counter::GuardStunOverBudget
                | Counter::GuardDtlsUnknownSource
                | Counter::GuardMediaUnknownSource
                | Counter::GuardGarbage
                | Counter::GuardTruncated
        )
    }
}

/// Number of counters (`CASCADE_COUNTER_COUNT`).
pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket reports
/// IPv4 peers) becomes the IPv4 address it carries: on the wire it is IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The family and the 16 address bytes of a key (IPv4 in the first 4).
pub fn address_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, bytes)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}

// The C side asserts the same sizes (bpf/cascade_maps.h).
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<FlowKey>() == 40);
    assert!(offset_of!(FlowKey, peer_port) == 32);
    assert!(offset_of!(FlowKey, family) == 36);
    assert!(size_of::<SourceKey>() == 20);
    assert!(size_of::<StunBucket>() == 16);
    assert!(size_of::<ConfigValue>() == 16);
    assert!(offset_of!(ConfigValue, stun_rate) == 4);
    assert!(size_of::<FanoutTarget>() == 56);
    assert!(offset_of!(FanoutTarget, peer_mac) == 32);
    assert!(offset_of!(FanoutTarget, peer_port) == 44);
    assert!(offset_of!(FanoutTarget, ifindex) == 48);
    assert!(offset_of!(FanoutTarget, family) == 52);
    assert!(size_of::<FanoutEntry>() == 56 * MAX_FANOUT_PEERS + 8);
    assert!(offset_of!(FanoutEntry, count) == 56 * MAX_FANOUT_PEERS);
    assert!(COUNTER_COUNT == 19);
};

// SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and integer
// arrays, and has no implicit padding (the sizes are asserted above), so every
// bit pattern is valid and it can be copied to and from the kernel as bytes.
#[cfg(target_os = "linux")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for SourceKey {}
    unsafe impl aya::Pod for StunBucket {}
    unsafe impl aya::Pod for ConfigValue {}
    unsafe impl aya::Pod for FanoutTarget {}
    unsafe impl aya::Pod for FanoutEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_key_holds_addresses_in_network_order() {
        let key = FlowKey::tuple(
            "10.1.2.3:5000".parse().unwrap(),
            "10.9.8.7:443".parse().unwrap(),
        );
        assert_eq!(key.family, FAMILY_V4);
        assert_eq!(&key.peer_addr[..4], &[10, 1, 2, 3]);
        assert_eq!(&key.peer_addr[4..], &[0; 12]);
        assert_eq!(&key.local_addr[..4], &[10, 9, 8, 7]);
        assert_eq!(key.peer_port.to_ne_bytes(), [0x13, 0x88]);
        assert_eq!(key.local_port.to_ne_bytes(), [0x01, 0xbb]);
    }

    #[test]
    fn mapped_and_unspecified_addresses() {
        let mapped = FlowKey::tuple(
            "[::ffff:10.1.2.3]:5000".parse().unwrap(),
            "[::]:443".parse().unwrap(),
        );
        let plain = FlowKey::tuple(
            "10.1.2.3:5000".parse().unwrap(),
            "0.0.0.0:443".parse().unwrap(),
        );
        assert_eq!(mapped, plain);
        assert_eq!(plain.local_addr, [0; 16]);

        let v6 = FlowKey::peer("[fd00::1]:7000".parse().unwrap());
        assert_eq!(v6.family, FAMILY_V6);
        assert_eq!(v6.local_port, 0);
        assert_eq!(v6.local_addr, [0; 16]);
    }

    #[test]
    fn counter_labels_are_unique_and_in_order() {
        let mut labels = std::collections::HashSet::new();
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert!(labels.insert(c.label()));
        }
    }
}
