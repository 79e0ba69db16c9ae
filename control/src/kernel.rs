//! The eBPF shell: turns data-plane commands into eBPF map updates (allow list of the
//! XDP guard, reuseport steering, cascade fan-out), the way the userspace workers turn
//! them into table changes. The SFU core never touches a map; it emits the same
//! commands either way.
//!
//! A fanned-out publisher's packets go up to userspace only while it has local
//! subscribers, or when it negotiated transport-wide feedback or audio levels (whose
//! feedback and speaker detection need every packet); otherwise the kernel's copies
//! are all there is, and its NACKs for the relays go to the publisher.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use cascade_command::command::{Command, SessionId};
use cascade_dataplane::worker::Dataplane;
use cascade_ebpf::{EbpfError, EbpfFastPath, EbpfMode, FanoutPeer, GuardConfig};

use crate::config::EbpfArg;

/// The attached eBPF fast path and the peers it allows, per session.
pub struct KernelShell {
    fast: EbpfFastPath,
    local: SocketAddr,
    workers: u32,
    peers: HashMap<SessionId, Vec<SocketAddr>>,
    /// The address each installed session's media comes from.
    installed: HashMap<SessionId, SocketAddr>,
    /// Sessions whose packets the kernel clones to cascade peers.
    fanning_out: HashMap<SessionId, SocketAddr>,
    /// The cascade peers of each publisher the kernel fans out.
    fanned_peers: HashMap<SessionId, Vec<SocketAddr>>,
    /// Fan-outs the kernel could not take yet (a peer's link-layer address was not
    /// known): userspace copies meanwhile, and [`KernelShell::retry`] tries again.
    waiting: HashMap<SessionId, Vec<SocketAddr>>,
    /// Each publisher's local routes (subscriber, publisher SSRC): with none, its
    /// fanned-out packets need not go up to userspace.
    routes: HashMap<SessionId, HashSet<(SessionId, u32)>>,
    /// Sessions whose every packet userspace must see: they negotiated
    /// transport-wide feedback (arrival times) or audio levels (active speaker).
    feedback: HashSet<SessionId>,
    failures: u64,
}

impl std::fmt::Debug for KernelShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelShell")
            .field("local", &self.local)
            .field("sessions", &self.peers.len())
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
            peers: HashMap::new(),
            installed: HashMap::new(),
            fanning_out: HashMap::new(),
            fanned_peers: HashMap::new(),
            waiting: HashMap::new(),
            routes: HashMap::new(),
            feedback: HashSet::new(),
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
    /// Mirrors one command into the maps. Map errors are counted, never fatal: the
    /// userspace path still checks every packet. Returns true for a `CascadeOut` the
    /// kernel now carries out (userspace must then not copy those packets too).
    pub fn apply(&mut self, cmd: &Command) -> bool {
        let mut handled = false;
        let result = match cmd {
            Command::PeerValidated { id, peer } => {
                let peers = self.peers.entry(*id).or_default();
                if !peers.contains(peer) {
                    peers.push(*peer);
                }
                // Steering keeps a session's packets on one worker.
                let worker = (*id % u64::from(self.workers.max(1))) as u32;
                self.fast
                    .allow(*peer, self.local)
                    .and_then(|()| self.fast.steer(*peer, worker))
            }
            Command::InstallSession {
                id,
                peer,
                extensions,
                ..
            } => {
                self.installed.insert(*id, *peer);
                if extensions.transport_cc != 0 || extensions.audio_level != 0 {
                    self.feedback.insert(*id);
                } else {
                    self.feedback.remove(id);
                }
                Ok(())
            }
            Command::UpdatePeer { id, peer } => {
                self.installed.insert(*id, *peer);
                Ok(())
            }
            Command::Route(r) => {
                let first = self.routes.get(&r.publisher).is_none_or(HashSet::is_empty);
                self.routes
                    .entry(r.publisher)
                    .or_default()
                    .insert((r.subscriber, r.publisher_ssrc));
                if first {
                    self.refresh_fanout(r.publisher)
                } else {
                    Ok(())
                }
            }
            Command::Unroute {
                publisher,
                publisher_ssrc,
                subscriber,
            } => {
                let emptied = self.routes.get_mut(publisher).is_some_and(|set| {
                    set.remove(&(*subscriber, *publisher_ssrc)) && set.is_empty()
                });
                if emptied {
                    self.refresh_fanout(*publisher)
                } else {
                    Ok(())
                }
            }
            Command::CascadeOut { publisher, peers } => match self.cascade_out(*publisher, peers) {
                Ok(h) => {
                    self.waiting.remove(publisher);
                    handled = h;
                    Ok(())
                }
                Err(e) => {
                    // Userspace now carries every peer: the kernel must not keep
                    // cloning to the peers of an earlier set, or they get doubles.
                    if let Some(source) = self.fanning_out.remove(publisher) {
                        let _ = self.fast.clear_fanout(source);
                    }
                    if matches!(e, EbpfError::NeighbourUnresolved { .. }) {
                        // Userspace's first copies make the kernel resolve it.
                        self.waiting.insert(*publisher, peers.clone());
                    } else {
                        self.waiting.remove(publisher);
                    }
                    Err(e)
                }
            },
            Command::RemoveSession { id } => {
                self.waiting.remove(id);
                self.feedback.remove(id);
                self.routes.remove(id);
                let mut r = Ok(());
                let emptied: Vec<SessionId> = self
                    .routes
                    .iter_mut()
                    .filter_map(|(p, set)| {
                        let before = set.len();
                        set.retain(|(s, _)| s != id);
                        (before > 0 && set.is_empty()).then_some(*p)
                    })
                    .collect();
                for p in emptied {
                    r = r.and(self.refresh_fanout(p));
                }
                self.fanned_peers.remove(id);
                if let Some(source) = self.fanning_out.remove(id) {
                    r = r.and(self.fast.clear_fanout(source));
                }
                self.installed.remove(id);
                for peer in self.peers.remove(id).unwrap_or_default() {
                    r = r
                        .and(self.fast.revoke(peer, self.local))
                        .and(self.fast.unsteer(peer));
                }
                r
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.failures += 1;
            tracing::debug!(error = %e, "eBPF map update failed");
        }
        handled
    }

    /// Installs (or clears) the kernel fan-out of a publisher; Ok(true) when the
    /// kernel now clones its packets to every peer.
    fn cascade_out(
        &mut self,
        publisher: SessionId,
        peers: &[SocketAddr],
    ) -> Result<bool, EbpfError> {
        let Some(&source) = self.installed.get(&publisher) else {
            return Ok(false);
        };
        if peers.is_empty() {
            self.fanned_peers.remove(&publisher);
            if self.fanning_out.remove(&publisher).is_some() {
                self.fast.clear_fanout(source)?;
            }
            return Ok(true);
        }
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
        self.fast
            .set_fanout(source, &fan, self.wants_userspace(publisher))?;
        self.fanning_out.insert(publisher, source);
        self.fanned_peers.insert(publisher, peers.to_vec());
        Ok(true)
    }

    /// Whether `publisher`'s packets must still reach userspace besides the kernel's
    /// copies: it has local subscribers, or it needs feedback computed from them.
    fn wants_userspace(&self, publisher: SessionId) -> bool {
        self.feedback.contains(&publisher)
            || self
                .routes
                .get(&publisher)
                .is_some_and(|set| !set.is_empty())
    }

    /// Re-installs a publisher's fan-out when whether it goes up to userspace changed.
    fn refresh_fanout(&mut self, publisher: SessionId) -> Result<(), EbpfError> {
        match self.fanned_peers.get(&publisher).cloned() {
            Some(peers) if self.fanning_out.contains_key(&publisher) => {
                self.cascade_out(publisher, &peers).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Tries again the fan-outs that waited for a neighbour; returns the publishers
    /// the kernel now clones for (userspace must stop copying their packets).
    pub fn retry(&mut self) -> Vec<SessionId> {
        let mut taken = Vec::new();
        let waiting: Vec<(SessionId, Vec<SocketAddr>)> = self.waiting.drain().collect();
        for (publisher, peers) in waiting {
            match self.cascade_out(publisher, &peers) {
                Ok(true) => {
                    tracing::debug!(publisher, "kernel fan-out taken over from userspace");
                    taken.push(publisher);
                }
                Ok(false) => {}
                Err(EbpfError::NeighbourUnresolved { .. }) => {
                    self.waiting.insert(publisher, peers);
                }
                Err(e) => {
                    self.failures += 1;
                    tracing::debug!(error = %e, "kernel fan-out stays in userspace");
                }
            }
        }
        taken
    }

    /// Whether some fan-out waits for [`KernelShell::retry`].
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
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
