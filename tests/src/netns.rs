//! Network namespaces for multi-host tests: hosts ([`Netns`]), links between them
//! ([`veth`], [`Bridge`]), servers started inside them ([`Netns::spawn_server`]),
//! code run inside them ([`Netns::enter`], [`Netns::block_on`]) and link
//! impairments (loss with nftables, rate with `tbf`).
//!
//! Every namespace gets a name no other run uses (`cascade-<pid>-<n>-<label>`)
//! and is deleted when its [`Netns`] is dropped, so parallel runs never meet and
//! a failing test leaves nothing behind. Addresses belong inside these
//! namespaces only (10.x); the host's own interfaces are never touched.
//!
//! Everything here needs root and iproute2: [`require`] skips a test without
//! them (and fails it in CI).

use std::ffi::OsStr;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{ServerProcess, cascade_bin, command_available};

/// Where `ip netns add` mounts named namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// Prefix of every namespace this harness creates.
const PREFIX: &str = "cascade-";

/// Longest a single `ip`/`nft`/`tc` invocation may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The nftables table that holds a namespace's loss rules.
const NFT_TABLE: &str = "cascade_test";

/// Why namespaces cannot be made here, or `None` when they can.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    if !command_available("ip") {
        return Some("the `ip` command (iproute2)".into());
    }
    None
}

/// `true` when namespaces can be made; otherwise [`crate::require_or_skip`]
/// (a skip on a developer's machine, a panic in CI).
pub fn require() -> bool {
    match unavailable_reason() {
        None => true,
        Some(what) => crate::require_or_skip(&what),
    }
}

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `cascade-<pid>-<n>-<label>` with `lo` up.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        static STALE: Once = Once::new();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        STALE.call_once(remove_stale);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{label}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(["link", "set", "lo", "up"])?;
        // No IPv6: its link-local addresses finish duplicate address detection a
        // second or two after a link comes up, and Chromium takes that address change
        // for a network change and aborts its requests in flight.
        ns.exec(
            "sh",
            [
                "-c",
                "for c in all default; do f=/proc/sys/net/ipv6/conf/$c/disable_ipv6; \
                 [ ! -e $f ] || echo 1 > $f; done",
            ],
        )?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`, the handle `setns(2)` takes.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// `ip netns exec <name> <program>`, to add arguments to and run.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its stdout; an exit
    /// status other than success is an error carrying its stderr.
    pub fn exec<I, S>(&self, program: &str, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.command(program).args(args))
    }

    /// `ip -n <name> args...`.
    pub fn ip<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `f` on a fresh thread that has joined this namespace, so every socket
    /// `f` opens (and every thread it starts) lives here. Panics in `f` propagate.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let file = File::open(self.path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.path().display()));
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(scope, move || {
                    // SAFETY: setns(2) on a namespace file descriptor this thread owns
                    // for the duration of the call; it changes only this thread.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        panic!(
                            "setns into {} failed: {}",
                            self.name,
                            io::Error::last_os_error()
                        );
                    }
                    drop(file);
                    f()
                })
                .expect("cannot spawn a thread");
            match thread.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs the future `f` makes on a current-thread tokio runtime inside the
    /// namespace (see [`enter`](Self::enter)): for HTTP calls to a server that
    /// listens on a namespace address.
    pub fn block_on<Fut>(&self, f: impl FnOnce() -> Fut + Send) -> Fut::Output
    where
        Fut: Future,
        Fut::Output: Send,
    {
        self.enter(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime")
                .block_on(f())
        })
    }

    /// A UDP socket bound to `addr` inside the namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        self.enter(|| UdpSocket::bind(addr))
    }

    /// One metric of the server at `http_base` (see [`crate::metric`]), read from
    /// inside this namespace.
    pub fn metric(&self, http_base: &str, name: &str) -> Option<f64> {
        self.block_on(|| crate::metric(http_base, name))
    }

    /// The whole `/metrics` text of the server at `http_base`, read from inside
    /// this namespace.
    pub fn metrics_text(&self, http_base: &str) -> anyhow::Result<String> {
        self.block_on(|| crate::metrics_text(http_base))
    }

    /// The neighbour-table state of `ip` here (`REACHABLE`, `STALE`, ...), if
    /// there is an entry.
    pub fn neighbour_state(&self, ip: std::net::IpAddr) -> Option<String> {
        let out = self.ip(["neigh", "show", &ip.to_string()]).ok()?;
        out.split_whitespace().last().map(str::to_owned)
    }

    /// Starts `cascade serve` inside the namespace, like [`ServerProcess::start`]:
    /// a fresh `--token-secret` unless `args` gives one, `--ebpf off` unless
    /// `args` says otherwise, and `--http-listen`/`--media-listen` on
    /// `127.0.0.1:0` unless given (a namespace's loopback is its own). Waits for
    /// the `cascade listening:` line. The server is killed if the thread that
    /// started it exits first.
    pub fn spawn_server<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<ServerProcess> {
        let mut cmd = self.command(cascade_bin());
        // `ip netns exec` execs the server in place (same pid), so the signal
        // reaches the server itself should this process die without stopping it.
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        ServerProcess::launch(cmd, args, &format!(" in {}", self.name))
    }

    /// Waits (at most 5 s) until `ifname` is operationally up with its queue
    /// attached: packets sent earlier may vanish without an error.
    pub fn wait_up(&self, ifname: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let link = self.ip(["-o", "link", "show", "dev", ifname])?;
            if link.contains("state UP") && !link.contains("qdisc noop") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{ifname} in {} is not up after 5 s: {link}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Makes a bridge `name` here, up, with no address: a switch that
    /// [`Bridge::connect`] plugs namespaces into.
    pub fn bridge(&self, name: &str) -> anyhow::Result<Bridge<'_>> {
        self.ip(["link", "add", name, "type", "bridge"])?;
        self.ip(["link", "set", name, "up"])?;
        Ok(Bridge {
            ns: self,
            name: name.to_owned(),
            ports: 0,
        })
    }

    /// Drops `percent` % of the packets that leave through `ifname`, at random:
    /// nftables `numgen random mod 100 < percent drop` on the interface's egress
    /// hook, past routing and bridging, so a local sender sees no error (as on a
    /// lossy link). IPv4 and IPv6 only: ARP and neighbour discovery go through.
    /// Adds up with earlier rules on the same interface.
    pub fn add_loss(&self, ifname: &str, percent: u8) -> anyhow::Result<()> {
        self.nft_loss("egress", ifname, percent)
    }

    /// Like [`add_loss`](Self::add_loss), for packets arriving on `ifname`.
    pub fn add_ingress_loss(&self, ifname: &str, percent: u8) -> anyhow::Result<()> {
        self.nft_loss("ingress", ifname, percent)
    }

    fn nft_loss(&self, hook: &str, ifname: &str, percent: u8) -> anyhow::Result<()> {
        anyhow::ensure!(percent <= 100, "loss of {percent} %");
        let chain: String = format!("{hook}_{ifname}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.exec("nft", ["add", "table", "netdev", NFT_TABLE])?;
        let spec = format!(
            "{{ type filter hook {hook} device \"{ifname}\" priority 0 ; policy accept ; }}"
        );
        self.exec("nft", ["add", "chain", "netdev", NFT_TABLE, &chain, &spec])?;
        // IP only: address resolution stays reliable, as it does not matter here.
        let rule = if percent == 100 {
            "meta protocol { ip, ip6 } drop".to_owned()
        } else {
            format!("meta protocol {{ ip, ip6 }} numgen random mod 100 < {percent} drop")
        };
        self.exec("nft", ["add", "rule", "netdev", NFT_TABLE, &chain, &rule])?;
        Ok(())
    }

    /// Removes every loss rule of this namespace.
    pub fn clear_loss(&self) -> anyhow::Result<()> {
        let tables = self.exec("nft", ["list", "tables"])?;
        if tables.contains(&format!("netdev {NFT_TABLE}")) {
            self.exec("nft", ["delete", "table", "netdev", NFT_TABLE])?;
        }
        Ok(())
    }

    /// Limits what leaves through `ifname` to `rate` (`tc` syntax: `300kbit`,
    /// `2mbit`, ...) with a token bucket (`tbf`): a burst of 20 ms at that rate (at
    /// least two full frames) and 50 ms of queue, beyond which packets drop.
    pub fn add_rate(&self, ifname: &str, rate: &str) -> anyhow::Result<()> {
        let bits = parse_rate(rate).with_context(|| format!("rate {rate:?}"))?;
        let burst = (bits / 8 / 50).max(2 * 1600);
        self.add_rate_with(ifname, rate, burst, Duration::from_millis(50))
    }

    /// [`add_rate`](Self::add_rate) with an explicit bucket size (bytes) and the
    /// longest a packet may wait in the queue.
    pub fn add_rate_with(
        &self,
        ifname: &str,
        rate: &str,
        burst_bytes: u64,
        latency: Duration,
    ) -> anyhow::Result<()> {
        let burst = burst_bytes.to_string();
        let latency = format!("{}us", latency.as_micros());
        self.exec(
            "tc",
            [
                "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", rate, "burst", &burst,
                "latency", &latency,
            ],
        )?;
        Ok(())
    }

    /// Removes the rate limit of `ifname`.
    pub fn clear_rate(&self, ifname: &str) -> anyhow::Result<()> {
        self.exec("tc", ["qdisc", "del", "dev", ifname, "root"])?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "delete", &self.name])) {
            eprintln!("cannot delete network namespace {}: {e:#}", self.name);
        }
    }
}

/// Sets the receive buffer of `socket` to `bytes` past `net.core.rmem_max`
/// (`SO_RCVBUFFORCE`, root only), so a burst waits there instead of dropping
/// while the test is busy elsewhere.
pub fn grow_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt(2) on a socket we borrow, with a pointer to a c_int and
    // its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Connects `a` and `b` with a veth pair: `a_if` in `a` with address `a_ip`
/// (CIDR, e.g. `10.1.0.1/24`), `b_if` in `b` with `b_ip`, both up. The pair goes
/// with either namespace.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_ip: &str,
    b: &Netns,
    b_if: &str,
    b_ip: &str,
) -> anyhow::Result<()> {
    a.ip([
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    for (ns, ifname, ip) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
        ns.ip(["addr", "add", ip, "dev", ifname])?;
        ns.ip(["link", "set", ifname, "up"])?;
    }
    a.wait_up(a_if)?;
    b.wait_up(b_if)
}

/// A bridge inside a namespace (see [`Netns::bridge`]): one layer-2 segment.
#[derive(Debug)]
pub struct Bridge<'a> {
    ns: &'a Netns,
    name: String,
    ports: u32,
}

impl Bridge<'_> {
    /// Plugs `ns` into the bridge through a veth pair: `ifname` in `ns`, with
    /// address `cidr` (e.g. `10.1.0.2/24`), up; the other end is a port of the
    /// bridge. Returns the port's name.
    pub fn connect(&mut self, ns: &Netns, ifname: &str, cidr: &str) -> anyhow::Result<String> {
        let port = format!("{}p{}", self.name, self.ports);
        self.ports += 1;
        self.ns.ip([
            "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", &ns.name,
        ])?;
        self.ns.ip(["link", "set", &port, "master", &self.name])?;
        self.ns.ip(["link", "set", &port, "up"])?;
        ns.ip(["addr", "add", cidr, "dev", ifname])?;
        ns.ip(["link", "set", ifname, "up"])?;
        self.ns.wait_up(&port)?;
        ns.wait_up(ifname)?;
        Ok(port)
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Runs `cmd` to completion (at most [`COMMAND_TIMEOUT`]); its stdout on success.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let out = wait_with_timeout(child, COMMAND_TIMEOUT).with_context(|| shown.clone())?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Deletes namespaces of earlier runs whose process is gone (a run that was
/// killed before its `Drop`s ran).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(Command::new("ip").args(["netns", "delete", &name]));
        }
    }
}

/// Bits per second of a `tc` rate (`300kbit`, `2mbit`, `1gbit`, `800bit`).
fn parse_rate(rate: &str) -> anyhow::Result<u64> {
    let rate = rate.trim().to_ascii_lowercase();
    let digits = rate
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rate.len());
    let (number, unit) = rate.split_at(digits);
    let number: u64 = number.parse().context("no number")?;
    let scale = match unit {
        "" | "bit" | "bps" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        other => bail!("unknown rate unit {other:?} (bit, kbit, mbit, gbit)"),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("300kbit").unwrap(), 300_000);
        assert_eq!(parse_rate("2mbit").unwrap(), 2_000_000);
        assert_eq!(parse_rate("1Gbit").unwrap(), 1_000_000_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("3kb").is_err());
    }

    /// Two namespaces over a veth pair, and a receiver that counts datagrams.
    fn pair() -> (Netns, Netns, UdpSocket, UdpSocket) {
        let a = Netns::new("ua").unwrap();
        let b = Netns::new("ub").unwrap();
        veth(&a, "eth0", "10.99.0.1/24", &b, "eth0", "10.99.0.2/24").unwrap();
        let tx = a.udp_socket("10.99.0.1:0".parse().unwrap()).unwrap();
        let rx = b.udp_socket("10.99.0.2:0".parse().unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        grow_receive_buffer(&rx, 8 << 20).unwrap();
        (a, b, tx, rx)
    }

    fn count(rx: &UdpSocket) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while rx.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn namespaces_links_and_sockets() {
        if !require() {
            return;
        }
        let (a, b, tx, rx) = pair();
        let name = a.name().to_owned();
        assert!(name.contains(&std::process::id().to_string()));
        tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, tx.local_addr().unwrap());
        // The host has no such address: the sockets live in the namespaces.
        assert!(UdpSocket::bind("10.99.0.1:0").is_err());
        assert_eq!(
            a.neighbour_state("10.99.0.2".parse().unwrap()).as_deref(),
            Some("REACHABLE")
        );
        assert!(b.exec("ip", ["addr"]).unwrap().contains("10.99.0.2/24"));
        drop((a, b));
        assert!(!PathBuf::from(NETNS_DIR).join(name).exists());
    }

    #[test]
    fn loss_drops_about_the_share_asked() {
        if !require() || !crate::require(command_available("nft"), "nft (nftables)") {
            return;
        }
        let (a, b, tx, rx) = pair();
        let dest = rx.local_addr().unwrap();
        let send = |n: u32| {
            for i in 0..n {
                // A lossy link: the sender sees no error.
                tx.send_to(&i.to_be_bytes(), dest).unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        a.add_loss("eth0", 30).unwrap();
        send(1000);
        let got = count(&rx);
        assert!((600..=800).contains(&got), "{got} of 1000 with 30 % loss");
        a.clear_loss().unwrap();
        a.clear_loss().unwrap();
        send(100);
        assert_eq!(count(&rx), 100);
        b.add_ingress_loss("eth0", 50).unwrap();
        send(1000);
        let got = count(&rx);
        assert!((400..=600).contains(&got), "{got} of 1000 with 50 % loss");
    }

    #[test]
    fn rate_limits_throughput() {
        if !require() || !crate::require(command_available("tc"), "tc (iproute2)") {
            return;
        }
        let (a, _b, tx, rx) = pair();
        a.add_rate("eth0", "800kbit").unwrap();
        let dest = rx.local_addr().unwrap();
        // 2 Mbit/s for one second, paced: about 800 kbit of it gets through.
        let payload = [0u8; 1000];
        let start = Instant::now();
        for i in 0..250u32 {
            tx.send_to(&payload, dest).unwrap();
            let due = start + Duration::from_millis(u64::from(i) * 4);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let got = count(&rx);
        // 800 kbit/s over ~1 s of 1028-byte frames is about 97, plus the bucket.
        assert!((70..=130).contains(&got), "{got} of 250 through 800 kbit");
        a.clear_rate("eth0").unwrap();
    }
}
