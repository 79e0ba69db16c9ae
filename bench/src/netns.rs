//! Two network namespaces joined by a veth pair, made by the bench and removed when
//! dropped: the server side (`10.77.X.1`) and the load side (`10.77.X.2`). Servers run
//! in the first with `ip netns exec`; the bench's own sockets are made in the second
//! by switching the creating thread there ([`Netns::enter_load`]).

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
        let ns = Self {
            server_ns: format!("cbench-s-{tag:04x}"),
            load_ns: format!("cbench-l-{tag:04x}"),
            server_ip: Ipv4Addr::new(10, 77, subnet, 1),
            load_ip: Ipv4Addr::new(10, 77, subnet, 2),
        };
        let (vs, vl) = (format!("cbs{tag:04x}"), format!("cbl{tag:04x}"));
        ip(&["netns", "add", &ns.server_ns])?;
        // From here on, Drop removes what exists.
        ip(&["netns", "add", &ns.load_ns])?;
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
        let back = File::open("/proc/thread-self/ns/net").context("opening own netns")?;
        let target = File::open(format!("/run/netns/{}", self.load_ns))
            .with_context(|| format!("opening netns {}", self.load_ns))?;
        // SAFETY: setns with a namespace fd this thread just opened.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        Ok(NsGuard { back })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        let _ = ip(&["netns", "del", &self.load_ns]);
        let _ = ip(&["netns", "del", &self.server_ns]);
    }
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
