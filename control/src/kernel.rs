//! The eBPF shell: writes what the core's commands say the kernel does into the
//! eBPF maps: the XDP guard's allow list and the reuseport steering
//! (`PeerValidated`/`PeerRevoked`), and the TC cascade fan-out (`KernelFanout`),
//! the way the userspace workers turn commands into table changes. It keeps no state
//! of its own besides a failure count: the core decides which publisher the kernel
//! fans out, whether its originals still go up to userspace, and when to ask again;
//! this shell reports each fan-out request's outcome back to it.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use cascade_command::command::Command;
use cascade_core::sfu::KernelOutcome;
use cascade_dataplane::worker::Dataplane;
use cascade_ebpf::{EbpfError, EbpfFastPath, EbpfMode, FanoutPeer, GuardConfig};

use crate::config::EbpfArg;

/// The attached eBPF fast path.
pub struct KernelShell {
    fast: EbpfFastPath,
    local: SocketAddr,
    workers: u32,
    failures: u64,
}

impl std::fmt::Debug for KernelShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelShell")
            .field("local", &self.local)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no network interface holds {0}")]
    NoInterface(IpAddr),
    #[error("{0}")]
    Ebpf(#[from] EbpfError),
}

/// Starts the fast path per `mode` on the interface of the media port. `Ok(None)`
/// when it is off or (in auto mode) unavailable; the reason is logged once.
pub fn start(
    mode: EbpfArg,
    interface: Option<&str>,
    dataplane: &Dataplane,
) -> Result<Option<KernelShell>, KernelError> {
    let local = dataplane.local_addr();
    let mode = match mode {
        EbpfArg::Off => return Ok(None),
        EbpfArg::Auto => EbpfMode::Auto,
        EbpfArg::On => EbpfMode::On,
    };
    if mode == EbpfMode::Auto && interface.is_none() && local.ip().is_loopback() {
        // A development server on loopback: an XDP program on `lo` would guard every
        // local service's traffic (and be shared by every such server) for no gain.
        tracing::info!(
            "eBPF fast path off: the media port is on loopback (--ebpf on attaches to lo anyway)"
        );
        return Ok(None);
    }
    let attach = || -> Result<Option<KernelShell>, KernelError> {
        let ifname = match interface {
            Some(i) => i.to_owned(),
            None => interface_of(local.ip()).ok_or(KernelError::NoInterface(local.ip()))?,
        };
        let Some(mut fast) =
            cascade_ebpf::start(mode, &ifname, local.port(), GuardConfig::default())?
        else {
            return Ok(None);
        };
        let fds: Vec<_> = dataplane
            .worker_sockets()
            .iter()
            .map(|s| s.as_fd())
            .collect();
        fast.attach_reuseport(&fds)?;
        tracing::info!(interface = %ifname, "eBPF fast path attached (XDP guard, reuseport steering, TC fan-out)");
        Ok(Some(KernelShell {
            fast,
            local,
            workers: fds.len() as u32,
            failures: 0,
        }))
    };
    match attach() {
        Ok(shell) => Ok(shell),
        Err(e) if mode == EbpfMode::Auto => {
            tracing::info!(reason = %e, "eBPF fast path off: forwarding in userspace");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl KernelShell {
    /// Writes one command into the maps. Map errors are counted, never fatal: the
    /// userspace path still checks every packet. For a `KernelFanout` with peers,
    /// returns the outcome the core needs to hear.
    pub fn apply(&mut self, cmd: &Command) -> Option<KernelOutcome> {
        let result = match cmd {
            Command::PeerValidated { id, peer } => {
                // Steering keeps a session's packets on one worker.
                let worker = (id.0 % u64::from(self.workers.max(1))) as u32;
                self.fast
                    .allow(*peer, self.local)
                    .and_then(|()| self.fast.steer(*peer, worker))
            }
            Command::PeerRevoked { peer, .. } => self
                .fast
                .revoke(*peer, self.local)
                .and_then(|()| self.fast.unsteer(*peer)),
            Command::KernelFanout { source, peers, .. } if peers.is_empty() => {
                self.fast.clear_fanout(*source)
            }
            Command::KernelFanout {
                source,
                peers,
                originals_up,
                ..
            } => {
                let outcome = match self.fan_out(*source, peers, *originals_up) {
                    Ok(()) => KernelOutcome::Taken,
                    Err(e) => {
                        self.failed(&e);
                        KernelOutcome::Refused {
                            retry: matches!(e, EbpfError::NeighbourUnresolved { .. }),
                        }
                    }
                };
                return Some(outcome);
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.failed(&e);
        }
        None
    }

    /// Has the kernel clone the packets from `source` to every peer.
    fn fan_out(
        &mut self,
        source: SocketAddr,
        peers: &[SocketAddr],
        originals_up: bool,
    ) -> Result<(), EbpfError> {
        let fan: Vec<FanoutPeer> = peers
            .iter()
            .map(|&peer| FanoutPeer {
                peer,
                local: self.local,
            })
            .collect();
        for &peer in peers {
            // The edge's NACKs and PLIs come back from the cascade peer.
            self.fast.allow(peer, self.local)?;
        }
        self.fast.set_fanout(source, &fan, originals_up)
    }

    fn failed(&mut self, e: &EbpfError) {
        self.failures += 1;
        tracing::debug!(error = %e, "eBPF map update failed");
    }

    /// Counters for `/metrics`.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut c = self.fast.counters().unwrap_or_default();
        c.push(("map_update_failures", self.failures));
        c
    }
}

/// The name of the interface that holds `ip` (`lo` for loopback addresses).
fn interface_of(ip: IpAddr) -> Option<String> {
    if ip.is_loopback() {
        return Some("lo".into());
    }
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = addrs;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and its family says which sockaddr it is.
        let addr = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()))
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::from(a.sin6_addr.s6_addr))
                }
                _ => None,
            }
        };
        if addr == Some(ip) {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: addrs came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addrs) };
    found
}
