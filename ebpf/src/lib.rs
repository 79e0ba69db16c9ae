//! Cascade's eBPF fast path: the kernel programs and their loader.
//!
//! Three programs, written in C (`bpf/`), compiled at build time and loaded with
//! `aya`:
//!
//! - an **XDP guard** on the media interface that judges UDP packets to the media
//!   port by their first byte (RFC 7983): STUN passes within a per-source budget,
//!   DTLS and SRTP/SRTCP pass only from 5-tuples control [allowed](EbpfFastPath::allow)
//!   after an ICE check, everything else is dropped and counted. Packets it cannot
//!   parse, and packets for other ports, pass untouched.
//! - **`sk_reuseport` steering**: a peer's packets reach the worker socket control
//!   [steered](EbpfFastPath::steer) it to; other peers are hashed by the kernel.
//! - a **TC cascade fan-out** on the same interface: a cascade source's SRTP/SRTCP
//!   is cloned, unchanged apart from its IP/UDP/Ethernet headers, to each cascade
//!   peer; the original reaches userspace only when local subscribers want it.
//!
//! The programs hold no policy: control decides, and this crate turns its
//! decisions into map updates. It never parses media or touches sessions.
//!
//! The crate builds everywhere. Programs are embedded only when clang-19 (and
//! libbpf's headers) were present at build time (see `build.rs`); on other
//! systems, in builds without programs, or without permission to load BPF,
//! [`start`] returns the reason and the server forwards in userspace.
//!
//! The kernel state these programs touch (links on an interface, a reuseport
//! group) is owned by [`EbpfFastPath`]: dropping it detaches everything.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;

pub mod maps;

#[cfg(target_os = "linux")]
mod netlink;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod platform;
#[cfg(not(target_os = "linux"))]
#[path = "stub.rs"]
mod platform;

pub use maps::Counter;

/// Why the eBPF fast path cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("not Linux")]
    NotLinux,
    #[error("kernel has no BTF (/sys/kernel/btf/vmlinux missing)")]
    NoBtf,
    #[error("no permission to load BPF programs (needs CAP_BPF or root)")]
    NoPermission,
    #[error("this build embeds no eBPF programs (clang-19 was not found at build time)")]
    NoPrograms,
}

/// What went wrong loading, attaching or updating the fast path.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("eBPF fast path unavailable: {0}")]
    Unavailable(#[from] Unavailable),
    #[error("cannot load the eBPF object: {0}")]
    Load(String),
    #[error("cannot load eBPF program {program}: {detail}")]
    Program {
        program: &'static str,
        detail: String,
    },
    #[error("cannot attach {program} to {target}: {detail}")]
    Attach {
        program: &'static str,
        target: String,
        detail: String,
    },
    #[error("{program} is not attached")]
    NotAttached { program: &'static str },
    #[error("eBPF map {map}: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("{first} and {second} are not of the same address family")]
    FamilyMismatch {
        first: SocketAddr,
        second: SocketAddr,
    },
    #[error("{count} {what}, at most {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("no route to {peer}: {detail}")]
    NoRoute { peer: IpAddr, detail: String },
    #[error("the link-layer address of next hop {next_hop} (to reach {peer}) is not resolved")]
    NeighbourUnresolved { peer: IpAddr, next_hop: IpAddr },
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    TestRun(String),
}

/// The `--ebpf` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EbpfMode {
    /// Attach when possible; otherwise [`start`] returns the reason, which the
    /// server logs once before running in userspace.
    #[default]
    Auto,
    /// The fast path is required: any failure is an error.
    On,
    /// Never load anything.
    Off,
}

impl std::str::FromStr for EbpfMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("unknown eBPF mode {other:?} (auto, on, off)")),
        }
    }
}

impl std::fmt::Display for EbpfMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// How the XDP guard is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode when the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver mode only (veth, most 10G+ NICs).
    Native,
    /// Generic (skb) mode: works on any interface, after the skb is built.
    Generic,
}

/// What the XDP guard allows and whether the fan-out is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// STUN packets per second each source address may send (0: no limit).
    /// STUN from an allowed 5-tuple (consent checks) does not count.
    pub stun_per_second: u32,
    /// STUN packets a source may send at once before the rate applies.
    pub stun_burst: u32,
    /// Attach the TC cascade fan-out next to the guard.
    pub fanout: bool,
    /// How the guard is attached.
    pub xdp_mode: XdpMode,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            stun_per_second: 50,
            stun_burst: 100,
            fanout: true,
            xdp_mode: XdpMode::Auto,
        }
    }
}

/// One cascade peer of a fan-out: where a source's packets are cloned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutPeer {
    /// The peer's relay address (the clone's destination).
    pub peer: SocketAddr,
    /// Our address the clone comes from. An unspecified IP takes the route's
    /// preferred source; port 0 takes the media port.
    pub local: SocketAddr,
}

/// The XDP guard's verdict on a frame, from [`EbpfFastPath::judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardVerdict {
    Pass,
    Drop,
    /// Any other XDP action (the guard returns none).
    Other(u32),
}

/// The loaded programs and their links; dropping it detaches them.
pub struct EbpfFastPath {
    inner: platform::FastPath,
}

impl std::fmt::Debug for EbpfFastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfFastPath")
            .field("xdp_mode", &self.xdp_mode())
            .finish_non_exhaustive()
    }
}

impl EbpfFastPath {
    /// Loads and attaches the XDP guard (and, if `config.fanout`, the TC fan-out)
    /// on `ifname`, for UDP port `media_port`.
    ///
    /// Route and neighbour lookups for [`set_fanout`](Self::set_fanout) happen in
    /// the network namespace of the calling thread at this point.
    pub fn attach(ifname: &str, media_port: u16, config: GuardConfig) -> Result<Self, EbpfError> {
        let mut fast_path = Self::load(media_port, config.clone())?;
        fast_path.inner.attach_interface(ifname, &config)?;
        Ok(fast_path)
    }

    /// Loads the programs and maps and configures the guard, attaching nothing:
    /// for [`judge`](Self::judge) and [`attach_reuseport`](Self::attach_reuseport)
    /// without an interface.
    pub fn load(media_port: u16, config: GuardConfig) -> Result<Self, EbpfError> {
        Ok(Self {
            inner: platform::FastPath::load(media_port, &config)?,
        })
    }

    /// Loads the steering program and attaches it to the `SO_REUSEPORT` group of
    /// `sockets` (`SO_ATTACH_REUSEPORT_EBPF`); `sockets[i]` is worker `i`. The
    /// sockets must have `SO_REUSEPORT` set and be bound. Replaces an earlier
    /// group; dropping the fast path detaches the program from the group.
    pub fn attach_reuseport(&mut self, sockets: &[BorrowedFd<'_>]) -> Result<(), EbpfError> {
        self.inner.attach_reuseport(sockets)
    }

    /// Lets DTLS and SRTP/SRTCP from `peer` to `local` through the guard. Call
    /// it before answering the ICE check that proves the peer, so its first DTLS
    /// record finds the entry. An unspecified `local` IP matches any local
    /// address on that port; port 0 means the media port.
    pub fn allow(&mut self, peer: SocketAddr, local: SocketAddr) -> Result<(), EbpfError> {
        self.inner.allow(peer, local)
    }

    /// Undoes [`allow`](Self::allow); revoking an unknown tuple is not an error.
    pub fn revoke(&mut self, peer: SocketAddr, local: SocketAddr) -> Result<(), EbpfError> {
        self.inner.revoke(peer, local)
    }

    /// Steers `peer`'s packets to socket `worker` of the reuseport group.
    pub fn steer(&mut self, peer: SocketAddr, worker: u32) -> Result<(), EbpfError> {
        self.inner.steer(peer, worker)
    }

    /// Undoes [`steer`](Self::steer): `peer` is hashed again.
    pub fn unsteer(&mut self, peer: SocketAddr) -> Result<(), EbpfError> {
        self.inner.unsteer(peer)
    }

    /// Clones SRTP/SRTCP from `source` (a cascade source: a publisher or an
    /// upstream relay) to each of `peers` (at most 32, same address family as
    /// `source`), in the kernel. The original goes up to userspace only if
    /// `local_subscribers`. `source` must also be [allowed](Self::allow), or
    /// the guard drops its packets first.
    ///
    /// The egress interface and MAC addresses are resolved now from the route
    /// and neighbour tables; [`EbpfError::NeighbourUnresolved`] means no packet
    /// has reached that next hop yet (retry once userspace has sent to the peer).
    /// Call it again when routes or neighbours change.
    pub fn set_fanout(
        &mut self,
        source: SocketAddr,
        peers: &[FanoutPeer],
        local_subscribers: bool,
    ) -> Result<(), EbpfError> {
        self.inner.set_fanout(source, peers, local_subscribers)
    }

    /// Stops the fan-out of `source`: its packets all go up to userspace again.
    pub fn clear_fanout(&mut self, source: SocketAddr) -> Result<(), EbpfError> {
        self.inner.clear_fanout(source)
    }

    /// Every counter summed over CPUs, labelled for `/metrics` (see [`Counter`]).
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, EbpfError> {
        self.inner.counters()
    }

    /// One counter summed over CPUs.
    pub fn counter(&self, counter: Counter) -> Result<u64, EbpfError> {
        self.inner.counter(counter)
    }

    /// Runs the XDP guard on `frame` (an Ethernet frame, at least 14 bytes) with
    /// `BPF_PROG_TEST_RUN`: no traffic, but the maps and counters are the live ones.
    pub fn judge(&self, frame: &[u8]) -> Result<GuardVerdict, EbpfError> {
        self.inner.judge(frame)
    }

    /// How the guard got attached, if it is.
    pub fn xdp_mode(&self) -> Option<XdpMode> {
        self.inner.xdp_mode()
    }
}

/// Starts the fast path as `mode` asks: `Off` gives `Ok(None)`; `Auto` and `On`
/// give the attached fast path or the reason it cannot run. The caller decides
/// what a failure means (`Auto`: log once and forward in userspace; `On`: fatal).
/// Logs nothing itself beyond `tracing` debug events.
pub fn start(
    mode: EbpfMode,
    ifname: &str,
    media_port: u16,
    config: GuardConfig,
) -> Result<Option<EbpfFastPath>, EbpfError> {
    match mode {
        EbpfMode::Off => {
            tracing::debug!("eBPF fast path off");
            return Ok(None);
        }
        EbpfMode::Auto => {
            // A missing BTF does not stop these programs (they use no CO-RE), so
            // only the reasons that certainly prevent loading stop `auto` early.
            match probe() {
                Ok(()) | Err(Unavailable::NoBtf) => {}
                Err(reason) => {
                    tracing::debug!(%reason, "eBPF fast path unavailable");
                    return Err(reason.into());
                }
            }
        }
        EbpfMode::On => {
            if !programs_embedded() {
                return Err(Unavailable::NoPrograms.into());
            }
        }
    }
    match EbpfFastPath::attach(ifname, media_port, config) {
        Ok(fast_path) => {
            tracing::debug!(
                ifname,
                media_port,
                xdp_mode = ?fast_path.xdp_mode(),
                "eBPF fast path attached"
            );
            Ok(Some(fast_path))
        }
        Err(e) => {
            tracing::debug!(ifname, error = %e, "eBPF fast path not attached");
            Err(e)
        }
    }
}

/// Checks whether the kernel would let this process load and attach programs.
pub fn probe() -> Result<(), Unavailable> {
    platform::probe()
}

/// True when the binary carries compiled eBPF programs.
pub fn programs_embedded() -> bool {
    cfg!(all(target_os = "linux", cascade_ebpf_programs))
}
