//! Network namespaces made by the bench and removed when dropped (and on interruption,
//! through [`crate::cleanup`]). [`Netns`]: two namespaces joined by a veth pair, the
//! server side (`10.77.X.1`) and the load side (`10.77.X.2`). [`Lan`]: several server
//! namespaces plugged into a bridge in the load namespace (`10.77.X.1`, `.2`, ...; the
//! load is `10.77.X.100`), for servers that talk to each other. Servers run in their
//! namespace with `ip netns exec`; the bench's own sockets are made in the load
//! namespace by switching the creating thread there ([`Netns::enter_load`]).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Context, bail};

/// The namespace pair.
pub(crate) struct Netns {
    pub(crate) server_ns: String,
    pub(crate) load_ns: String,
    pub(crate) server_ip: Ipv4Addr,
    pub(crate) load_ip: Ipv4Addr,
    /// The veth end in the server namespace.
    pub(crate) server_if: String,
    /// The veth end in the load namespace.
    pub(crate) load_if: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Creates the namespaces and the veth pair (needs root).
    pub(crate) fn create() -> anyhow::Result<Self> {
        let tag: u16 = rand::random();
        let subnet = 1 + (tag % 250) as u8;
        let (vs, vl) = (format!("cbs{tag:04x}"), format!("cbl{tag:04x}"));
        let ns = Self {
            server_ns: format!("cbench-s-{tag:04x}"),
            load_ns: format!("cbench-l-{tag:04x}"),
            server_ip: Ipv4Addr::new(10, 77, subnet, 1),
            load_ip: Ipv4Addr::new(10, 77, subnet, 2),
            server_if: vs.clone(),
            load_if: vl.clone(),
        };
        add_ns(&ns.server_ns)?;
        // From here on, Drop removes what exists.
        add_ns(&ns.load_ns)?;
        ip(&["link", "add", &vs, "type", "veth", "peer", "name", &vl])?;
        ip(&["link", "set", &vs, "netns", &ns.server_ns])?;
        ip(&["link", "set", &vl, "netns", &ns.load_ns])?;
        for (n, dev, addr) in [
            (&ns.server_ns, &vs, ns.server_ip),
            (&ns.load_ns, &vl, ns.load_ip),
        ] {
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", n, "link", "set", dev, "up"])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// Moves the calling thread into the load namespace until the guard drops. Sockets
    /// the thread creates meanwhile (and threads it spawns) live there.
    pub(crate) fn enter_load(&self) -> anyhow::Result<NsGuard> {
        enter(&self.load_ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        del_ns(&self.load_ns);
        del_ns(&self.server_ns);
    }
}

/// One server namespace of a [`Lan`].
pub(crate) struct LanHost {
    pub(crate) ns: String,
    pub(crate) ip: Ipv4Addr,
    /// Its interface (a veth whose other end is a bridge port in the load namespace).
    pub(crate) ifname: String,
}

/// Server namespaces on one bridged segment with the load namespace, which holds the
/// bridge.
pub(crate) struct Lan {
    pub(crate) load_ns: String,
    pub(crate) load_ip: Ipv4Addr,
    pub(crate) hosts: Vec<LanHost>,
}

impl Lan {
    /// Creates the load namespace with its bridge and `servers` server namespaces
    /// (needs root).
    pub(crate) fn create(servers: usize) -> anyhow::Result<Self> {
        if servers == 0 || servers > 50 {
            bail!("between 1 and 50 server namespaces, not {servers}");
        }
        let tag: u16 = rand::random();
        let subnet = 1 + (tag % 250) as u8;
        let mut lan = Self {
            load_ns: format!("cbench-l-{tag:04x}"),
            load_ip: Ipv4Addr::new(10, 77, subnet, 100),
            hosts: Vec::new(),
        };
        let l = lan.load_ns.clone();
        add_ns(&l)?;
        // From here on, Drop removes what exists.
        ip(&["-n", &l, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &l,
            "addr",
            "add",
            &format!("{}/24", lan.load_ip),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &l, "link", "set", "br0", "up"])?;
        ip(&["-n", &l, "link", "set", "lo", "up"])?;
        for i in 0..servers {
            let host = LanHost {
                ns: format!("cbench-m{}-{tag:04x}", i + 1),
                ip: Ipv4Addr::new(10, 77, subnet, i as u8 + 1),
                ifname: "eth0".into(),
            };
            add_ns(&host.ns)?;
            lan.hosts.push(host);
            let host = &lan.hosts[i];
            let port = format!("p{}", i + 1);
            ip(&[
                "-n",
                &l,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                &host.ifname,
                "netns",
                &host.ns,
            ])?;
            ip(&["-n", &l, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &l, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", host.ip);
            ip(&["-n", &host.ns, "addr", "add", &addr, "dev", &host.ifname])?;
            ip(&["-n", &host.ns, "link", "set", &host.ifname, "up"])?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    /// See [`Netns::enter_load`].
    pub(crate) fn enter_load(&self) -> anyhow::Result<NsGuard> {
        enter(&self.load_ns)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            del_ns(&h.ns);
        }
        del_ns(&self.load_ns);
    }
}

fn add_ns(name: &str) -> anyhow::Result<()> {
    ip(&["netns", "add", name])?;
    crate::cleanup::register(name);
    Ok(())
}

fn del_ns(name: &str) {
    let _ = ip(&["netns", "del", name]);
    crate::cleanup::unregister(name);
}

/// Moves the calling thread into namespace `ns` until the guard drops.
fn enter(ns: &str) -> anyhow::Result<NsGuard> {
    let back = File::open("/proc/thread-self/ns/net").context("opening own netns")?;
    let target =
        File::open(format!("/run/netns/{ns}")).with_context(|| format!("opening netns {ns}"))?;
    // SAFETY: setns with a namespace fd this thread just opened.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(NsGuard { back })
}

/// Runs `sh -c SCRIPT` inside namespace `ns` (`ip netns exec` also mounts that
/// namespace's `/sys`).
pub(crate) fn exec_sh(ns: &str, script: &str) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .with_context(|| format!("cannot run ip netns exec {ns}"))?;
    if !out.status.success() {
        bail!(
            "in netns {ns}: {script}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Returns the thread to the namespace it came from.
pub(crate) struct NsGuard {
    back: File,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        // SAFETY: setns with the fd of the namespace this thread was in.
        let rc = unsafe { libc::setns(self.back.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            eprintln!(
                "cannot return to the original network namespace: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
