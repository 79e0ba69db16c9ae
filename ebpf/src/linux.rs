//! Linux loader: the probe, and the fast path on `aya`: loads the embedded
//! object, attaches the programs, and turns control's decisions into map
//! updates. It never decides policy itself.

use std::error::Error;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, ReusePortSockArray};
use aya::programs::{SchedClassifier, SkReuseport, TcAttachType, Xdp, XdpMode as AyaXdpMode, tc};
use aya::{Ebpf, EbpfLoader, TestRun, TestRunOptions};

use crate::maps::{
    ConfigValue, Counter, FANOUT_LOCAL_SUBSCRIBERS, FanoutEntry, FanoutTarget, FlowKey,
    MAX_FANOUT_PEERS, MAX_WORKERS, address_bytes, canonical,
};
use crate::netlink::RouteSocket;
use crate::{EbpfError, FanoutPeer, GuardConfig, GuardVerdict, Unavailable, XdpMode};

const GUARD_PROGRAM: &str = "xdp_guard";
const STEER_PROGRAM: &str = "sk_steer";
const FANOUT_PROGRAM: &str = "tc_fanout";

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

pub(crate) fn probe() -> Result<(), Unavailable> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Unavailable::NoBtf);
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && !has_cap_bpf() {
        return Err(Unavailable::NoPermission);
    }
    if !crate::programs_embedded() {
        return Err(Unavailable::NoPrograms);
    }
    Ok(())
}

/// Reads the effective capability set of this process (CAP_BPF is bit 39).
fn has_cap_bpf() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 39) != 0)
}

/// The object `build.rs` compiled, if it did.
#[cfg(cascade_ebpf_programs)]
fn object() -> Option<&'static [u8]> {
    Some(aya::include_bytes_aligned!(concat!(
        env!("OUT_DIR"),
        "/cascade.bpf.o"
    )))
}

#[cfg(not(cascade_ebpf_programs))]
fn object() -> Option<&'static [u8]> {
    None
}

/// An error and its sources, on one line.
fn detail(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        detail: detail(&e),
    }
}

fn is_not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, EbpfError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| EbpfError::Map {
        map: name,
        detail: "missing from the object".into(),
    })?;
    T::try_from(map).map_err(map_error(name))
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, EbpfError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| EbpfError::Program {
        program: name,
        detail: "missing from the object".into(),
    })?;
    program
        .try_into()
        .map_err(|e: aya::programs::ProgramError| EbpfError::Program {
            program: name,
            detail: detail(&e),
        })
}

pub(crate) struct FastPath {
    ebpf: Ebpf,
    config: Array<MapData, ConfigValue>,
    allow: HashMap<MapData, FlowKey, u32>,
    steer: HashMap<MapData, FlowKey, u32>,
    fanout: HashMap<MapData, FlowKey, FanoutEntry>,
    workers: ReusePortSockArray<MapData>,
    counters: PerCpuArray<MapData, u64>,
    routes: RouteSocket,
    media_port: u16,
    xdp_mode: Option<XdpMode>,
    fanout_attached: bool,
    steer_loaded: bool,
    /// A duplicate of one socket of the steered group, to detach on drop.
    reuseport_group: Option<OwnedFd>,
    workers_len: u32,
}

impl FastPath {
    pub(crate) fn load(media_port: u16, config: &GuardConfig) -> Result<Self, EbpfError> {
        let object = object().ok_or(Unavailable::NoPrograms)?;
        let routes = RouteSocket::open().map_err(|e| EbpfError::Load(format!("netlink: {e}")))?;
        let mut ebpf = EbpfLoader::new()
            .load(object)
            .map_err(|e| EbpfError::Load(detail(&e)))?;
        let mut fast_path = Self {
            config: take_map(&mut ebpf, "CONFIG")?,
            allow: take_map(&mut ebpf, "ALLOW")?,
            steer: take_map(&mut ebpf, "STEER")?,
            fanout: take_map(&mut ebpf, "FANOUT")?,
            workers: take_map(&mut ebpf, "WORKERS")?,
            counters: take_map(&mut ebpf, "COUNTERS")?,
            ebpf,
            routes,
            media_port,
            xdp_mode: None,
            fanout_attached: false,
            steer_loaded: false,
            reuseport_group: None,
            workers_len: 0,
        };
        fast_path.configure(config)?;
        let guard: &mut Xdp = program_mut(&mut fast_path.ebpf, GUARD_PROGRAM)?;
        guard.load().map_err(|e| EbpfError::Program {
            program: GUARD_PROGRAM,
            detail: detail(&e),
        })?;
        Ok(fast_path)
    }

    fn configure(&mut self, config: &GuardConfig) -> Result<(), EbpfError> {
        let value = ConfigValue {
            media_port: self.media_port.to_be(),
            pad: 0,
            stun_rate: config.stun_per_second,
            stun_burst: config.stun_burst.max(1),
            flags: 0,
        };
        self.config.set(0, value, 0).map_err(map_error("CONFIG"))
    }

    pub(crate) fn attach_interface(
        &mut self,
        ifname: &str,
        config: &GuardConfig,
    ) -> Result<(), EbpfError> {
        let attempts: &[(XdpMode, AyaXdpMode)] = match config.xdp_mode {
            XdpMode::Auto => &[
                (XdpMode::Native, AyaXdpMode::Driver),
                (XdpMode::Generic, AyaXdpMode::Skb),
            ],
            XdpMode::Native => &[(XdpMode::Native, AyaXdpMode::Driver)],
            XdpMode::Generic => &[(XdpMode::Generic, AyaXdpMode::Skb)],
        };
        let guard: &mut Xdp = program_mut(&mut self.ebpf, GUARD_PROGRAM)?;
        let mut failures = Vec::new();
        for &(ours, theirs) in attempts {
            match guard.attach(ifname, theirs) {
                Ok(_) => {
                    self.xdp_mode = Some(ours);
                    break;
                }
                Err(e) => failures.push(format!("{ours:?}: {}", detail(&e))),
            }
        }
        if self.xdp_mode.is_none() {
            return Err(EbpfError::Attach {
                program: GUARD_PROGRAM,
                target: ifname.into(),
                detail: failures.join("; "),
            });
        }

        if config.fanout {
            let fanout: &mut SchedClassifier = program_mut(&mut self.ebpf, FANOUT_PROGRAM)?;
            fanout.load().map_err(|e| EbpfError::Program {
                program: FANOUT_PROGRAM,
                detail: detail(&e),
            })?;
            // Kernels since 6.6 attach through TCX; older ones need a clsact qdisc.
            if let Err(first) = fanout.attach(ifname, TcAttachType::Ingress) {
                let _ = tc::qdisc_add_clsact(ifname);
                fanout
                    .attach(ifname, TcAttachType::Ingress)
                    .map_err(|e| EbpfError::Attach {
                        program: FANOUT_PROGRAM,
                        target: ifname.into(),
                        detail: format!("{}; after adding clsact: {}", detail(&first), detail(&e)),
                    })?;
            }
            self.fanout_attached = true;
        }
        Ok(())
    }

    pub(crate) fn attach_reuseport(&mut self, sockets: &[BorrowedFd<'_>]) -> Result<(), EbpfError> {
        let Some(first) = sockets.first() else {
            return Err(EbpfError::Attach {
                program: STEER_PROGRAM,
                target: "a reuseport group".into(),
                detail: "no sockets given".into(),
            });
        };
        if sockets.len() > MAX_WORKERS as usize {
            return Err(EbpfError::TooMany {
                what: "reuseport sockets",
                count: sockets.len(),
                max: MAX_WORKERS as usize,
            });
        }
        if !self.steer_loaded {
            let program: &mut SkReuseport = program_mut(&mut self.ebpf, STEER_PROGRAM)?;
            program.load().map_err(|e| EbpfError::Program {
                program: STEER_PROGRAM,
                detail: detail(&e),
            })?;
            self.steer_loaded = true;
        }
        if let Some(old) = self.reuseport_group.take() {
            let _ = SkReuseport::detach(&old);
        }
        for index in 0..self.workers_len {
            let _ = self.workers.clear_index(&index);
        }
        self.workers_len = 0;
        for (index, socket) in sockets.iter().enumerate() {
            self.workers
                .set(index as u32, socket, 0)
                .map_err(map_error("WORKERS"))?;
            self.workers_len = index as u32 + 1;
        }
        let attach_error = |detail: String| EbpfError::Attach {
            program: STEER_PROGRAM,
            target: "the reuseport group".into(),
            detail,
        };
        let group = first
            .try_clone_to_owned()
            .map_err(|e: io::Error| attach_error(e.to_string()))?;
        let program: &mut SkReuseport = program_mut(&mut self.ebpf, STEER_PROGRAM)?;
        program
            .attach(first)
            .map_err(|e| attach_error(detail(&e)))?;
        self.reuseport_group = Some(group);
        Ok(())
    }

    /// The `ALLOW` key of a tuple; port 0 means the media port.
    fn allow_key(&self, peer: SocketAddr, local: SocketAddr) -> Result<FlowKey, EbpfError> {
        let (peer_c, local_c) = (canonical(peer), canonical(local));
        if !local_c.ip().is_unspecified() && peer_c.is_ipv4() != local_c.is_ipv4() {
            return Err(EbpfError::FamilyMismatch {
                first: peer,
                second: local,
            });
        }
        let port = if local.port() == 0 {
            self.media_port
        } else {
            local.port()
        };
        Ok(FlowKey::tuple(peer_c, SocketAddr::new(local_c.ip(), port)))
    }

    pub(crate) fn allow(&mut self, peer: SocketAddr, local: SocketAddr) -> Result<(), EbpfError> {
        let key = self.allow_key(peer, local)?;
        self.allow.insert(key, 1, 0).map_err(map_error("ALLOW"))
    }

    pub(crate) fn revoke(&mut self, peer: SocketAddr, local: SocketAddr) -> Result<(), EbpfError> {
        let key = self.allow_key(peer, local)?;
        match self.allow.remove(&key) {
            Err(e) if !is_not_found(&e) => Err(map_error("ALLOW")(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn steer(&mut self, peer: SocketAddr, worker: u32) -> Result<(), EbpfError> {
        if worker >= MAX_WORKERS {
            return Err(EbpfError::TooMany {
                what: "workers",
                count: worker as usize + 1,
                max: MAX_WORKERS as usize,
            });
        }
        self.steer
            .insert(FlowKey::peer(peer), worker, 0)
            .map_err(map_error("STEER"))
    }

    pub(crate) fn unsteer(&mut self, peer: SocketAddr) -> Result<(), EbpfError> {
        match self.steer.remove(&FlowKey::peer(peer)) {
            Err(e) if !is_not_found(&e) => Err(map_error("STEER")(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn set_fanout(
        &mut self,
        source: SocketAddr,
        peers: &[FanoutPeer],
        local_subscribers: bool,
    ) -> Result<(), EbpfError> {
        if !self.fanout_attached {
            return Err(EbpfError::NotAttached {
                program: FANOUT_PROGRAM,
            });
        }
        if peers.len() > MAX_FANOUT_PEERS {
            return Err(EbpfError::TooMany {
                what: "fan-out peers",
                count: peers.len(),
                max: MAX_FANOUT_PEERS,
            });
        }
        let source_v4 = canonical(source).is_ipv4();
        let mut entry = FanoutEntry::default();
        for (slot, peer) in entry.peers.iter_mut().zip(peers) {
            if canonical(peer.peer).is_ipv4() != source_v4 {
                return Err(EbpfError::FamilyMismatch {
                    first: source,
                    second: peer.peer,
                });
            }
            *slot = self.resolve(peer)?;
        }
        entry.count = peers.len() as u32;
        entry.flags = if local_subscribers {
            FANOUT_LOCAL_SUBSCRIBERS
        } else {
            0
        };
        self.fanout
            .insert(FlowKey::peer(source), entry, 0)
            .map_err(map_error("FANOUT"))
    }

    /// Where a clone to `peer` leaves: route, source address, MACs.
    fn resolve(&mut self, target: &FanoutPeer) -> Result<FanoutTarget, EbpfError> {
        let peer = canonical(target.peer);
        let local = canonical(target.local);
        let no_route = |detail: String| EbpfError::NoRoute {
            peer: peer.ip(),
            detail,
        };
        let wanted_src = (!local.ip().is_unspecified()).then_some(local.ip());
        if wanted_src.is_some_and(|ip| ip.is_ipv4() != peer.is_ipv4()) {
            return Err(EbpfError::FamilyMismatch {
                first: target.local,
                second: target.peer,
            });
        }
        let route = self
            .routes
            .route_get(peer.ip(), wanted_src)
            .map_err(|e| no_route(e.to_string()))?;
        let local_ip: IpAddr = wanted_src
            .or(route.prefsrc)
            .filter(|ip| ip.is_ipv4() == peer.is_ipv4())
            .ok_or_else(|| no_route("the route gives no source address".into()))?;
        let link = self
            .routes
            .link(route.oif)
            .map_err(|e| no_route(format!("interface {}: {e}", route.oif)))?;
        let (peer_mac, local_mac) = match link.mac {
            Some(local_mac) => {
                let next_hop = route.gateway.unwrap_or(peer.ip());
                let mac = self
                    .routes
                    .neighbour(route.oif, next_hop)
                    .map_err(|e| no_route(format!("neighbour table: {e}")))?
                    .ok_or(EbpfError::NeighbourUnresolved {
                        peer: peer.ip(),
                        next_hop,
                    })?;
                (mac, local_mac)
            }
            // A device without link-layer header: the kernel strips ours.
            None => ([0; 6], [0; 6]),
        };
        let (family, peer_addr) = address_bytes(peer.ip());
        let local_port = if local.port() == 0 {
            self.media_port
        } else {
            local.port()
        };
        Ok(FanoutTarget {
            peer_addr,
            local_addr: address_bytes(local_ip).1,
            peer_mac,
            local_mac,
            peer_port: peer.port().to_be(),
            local_port: local_port.to_be(),
            ifindex: route.oif,
            family,
            pad: [0; 3],
        })
    }

    pub(crate) fn clear_fanout(&mut self, source: SocketAddr) -> Result<(), EbpfError> {
        match self.fanout.remove(&FlowKey::peer(source)) {
            Err(e) if !is_not_found(&e) => Err(map_error("FANOUT")(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn counters(&self) -> Result<Vec<(&'static str, u64)>, EbpfError> {
        Counter::ALL
            .iter()
            .map(|&c| Ok((c.label(), self.counter(c)?)))
            .collect()
    }

    pub(crate) fn counter(&self, counter: Counter) -> Result<u64, EbpfError> {
        let values = self
            .counters
            .get(&(counter as u32), 0)
            .map_err(map_error("COUNTERS"))?;
        Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
    }

    pub(crate) fn judge(&self, frame: &[u8]) -> Result<GuardVerdict, EbpfError> {
        let program = self
            .ebpf
            .program(GUARD_PROGRAM)
            .ok_or_else(|| EbpfError::TestRun(format!("{GUARD_PROGRAM} missing")))?;
        let guard: &Xdp = program
            .try_into()
            .map_err(|e: aya::programs::ProgramError| EbpfError::TestRun(detail(&e)))?;
        let result = guard
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .map_err(|e| EbpfError::TestRun(detail(&e)))?;
        Ok(match result.return_value {
            XDP_PASS => GuardVerdict::Pass,
            XDP_DROP => GuardVerdict::Drop,
            other => GuardVerdict::Other(other),
        })
    }

    pub(crate) fn xdp_mode(&self) -> Option<XdpMode> {
        self.xdp_mode
    }
}

impl Drop for FastPath {
    fn drop(&mut self) {
        // The kernel keeps a reuseport program attached for as long as the group
        // lives; the interface links go when `ebpf` drops.
        if let Some(group) = self.reuseport_group.take() {
            let _ = SkReuseport::detach(&group);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_gives_a_reason_or_ok() {
        // Whatever the machine, the probe answers without panicking, and a build
        // without programs cannot claim the fast path is ready.
        let probed = crate::probe();
        if !crate::programs_embedded() {
            assert!(probed.is_err());
        }
    }
}
