//! One data centre in network namespaces, for placement tests: media servers on
//! one layer-2 segment (a bridge), each in its own namespace with its HTTP API on
//! port 80 of its own address, following the SRV records (`--members-srv`) that a
//! `cascade dns` in another namespace serves from a zone file the test can append
//! to, and a client namespace for the test's peers.
//!
//! It owns the test side only: the topology, the zone file and the lifetimes of
//! the processes (servers stop, then the DNS, then the namespaces go, when the
//! [`DataCentre`] drops, panic or not). What the servers make of it is what is
//! under test.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::netns::Netns;
use crate::service::ServiceProcess;
use crate::{SHUTDOWN_TIMEOUT, ServerProcess, cascade_bin};

/// The zone `cascade dns` is authoritative for.
pub const ZONE: &str = "dc1.cascade.test";

/// The SRV name listing the data centre's healthy media servers.
pub const SRV_NAME: &str = "_cascade._tcp.dc1.cascade.test";

/// Every host is `10.77.0.<n>/24`: server `i` is `n = i + 1`.
const SUBNET: [u8; 3] = [10, 77, 0];
const DNS_HOST: u8 = 53;
const CLIENT_HOST: u8 = 100;

/// How often `cascade dns` probes each server's `/healthz`.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

fn host_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], n)
}

/// The address of server `i`.
pub fn server_ip(i: usize) -> Ipv4Addr {
    host_ip(u8::try_from(i + 1).expect("fewer than 50 servers"))
}

/// The base URL of server `i`: its `--public-url`, and the member URL SRV port 80
/// gives (`http://10.77.0.<i+1>`).
pub fn member_url(i: usize) -> String {
    format!("http://{}", server_ip(i))
}

/// The address of the client namespace, where tests bind their peers.
pub fn client_ip() -> Ipv4Addr {
    host_ip(CLIENT_HOST)
}

/// The zone's `[[server]]` record of server `i`: `m<i+1>`, SRV port 80, probed on
/// its `/healthz`.
pub fn server_record(i: usize) -> String {
    let ip = server_ip(i);
    format!(
        "\n[[server]]\nname = \"m{n}\"\naddress = \"{ip}\"\nregion = \"dc1\"\nport = 80\n\
         health_url = \"http://{ip}/healthz\"\n",
        n = i + 1
    )
}

/// Media servers in namespaces on one bridge, with `cascade dns` serving their SRV
/// records. Fields drop in order: the servers stop first, then the DNS, then the
/// namespaces go (the bridge with the last).
#[derive(Debug)]
pub struct DataCentre {
    /// Server `i` listens on [`server_ip`]`(i)`, HTTP on port 80.
    pub servers: Vec<ServerProcess>,
    pub dns: DnsProcess,
    pub zone: ZoneFile,
    /// The namespace of the test's peers, on [`client_ip`].
    pub client: Netns,
    _hosts: Vec<Netns>,
    _dns_host: Netns,
    _switch: Netns,
}

impl DataCentre {
    /// `n` media servers, the first `listed` of them in the zone (the others run,
    /// with the same flags, for a test to [`list`](Self::list) later). Each runs
    /// `cascade serve --members-srv SRV_NAME` against the DNS, with the
    /// `CASCADE_DATAPLANE` backend when set and `server_args` (token secret,
    /// cluster flags, capacity, ...).
    pub fn start(n: usize, listed: usize, server_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_ttl(n, listed, 1, server_args)
    }

    /// [`start`](Self::start) with the zone's records valid `ttl` seconds: each
    /// server resolves the members again that often.
    pub fn start_with_ttl(
        n: usize,
        listed: usize,
        ttl: u32,
        server_args: &[&str],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(listed <= n && n < 50, "{listed} of {n} servers");
        let switch = Netns::new("dc-switch")?;
        let mut bridge = switch.bridge("br0")?;
        let cidr = |ip: Ipv4Addr| format!("{ip}/24");
        let client = Netns::new("dc-client")?;
        bridge.connect(&client, "eth0", &cidr(client_ip()))?;
        let dns_host = Netns::new("dc-dns")?;
        bridge.connect(&dns_host, "eth0", &cidr(host_ip(DNS_HOST)))?;
        let hosts = (0..n)
            .map(|i| {
                let ns = Netns::new(&format!("dc-m{}", i + 1))?;
                bridge.connect(&ns, "eth0", &cidr(server_ip(i)))?;
                Ok(ns)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;

        let mut text = format!("zone = \"{ZONE}\"\nttl = {ttl}\nanswers = {n}\n");
        for i in 0..listed {
            text.push_str(&server_record(i));
        }
        let zone = ZoneFile::new(&text)?;
        // The DNS first: servers resolve SRV as they start (until every server
        // answers its probe, the DNS lists all of them or the healthy ones).
        let dns = DnsProcess::start(
            &dns_host,
            &zone,
            SocketAddr::from((host_ip(DNS_HOST), 53)),
            SocketAddr::from((host_ip(DNS_HOST), 8053)),
        )?;
        let dns_addr = dns.dns.to_string();
        let mut servers = Vec::with_capacity(n);
        for (i, ns) in hosts.iter().enumerate() {
            let ip = server_ip(i);
            let mut args: Vec<String> = vec![
                "--http-listen".into(),
                format!("{ip}:80"),
                "--media-listen".into(),
                format!("{ip}:0"),
                "--public-url".into(),
                member_url(i),
                "--members-srv".into(),
                SRV_NAME.into(),
                "--members-dns".into(),
                dns_addr.clone(),
            ];
            if let Ok(d) = std::env::var("CASCADE_DATAPLANE")
                && !d.is_empty()
            {
                args.extend(["--dataplane".into(), d]);
            }
            args.extend(server_args.iter().map(|s| s.to_string()));
            servers.push(
                ns.spawn_server(&args)
                    .with_context(|| format!("starting server m{}", i + 1))?,
            );
        }
        Ok(DataCentre {
            servers,
            dns,
            zone,
            client,
            _hosts: hosts,
            _dns_host: dns_host,
            _switch: switch,
        })
    }

    /// Appends server `i`'s record to the zone file: the DNS picks it up on its
    /// next reload (every second), and lists it once its probe answers.
    pub fn list(&self, i: usize) -> anyhow::Result<()> {
        self.zone.append(&server_record(i))
    }

    /// Which server a URL (a resource URL, a redirect target) is on.
    pub fn server_of(&self, url: &str) -> Option<usize> {
        (0..self.servers.len()).find(|&i| {
            let base = member_url(i);
            url == base || url.starts_with(&format!("{base}/"))
        })
    }
}

/// A zone file in the temp directory, removed on drop.
#[derive(Debug)]
pub struct ZoneFile(PathBuf);

impl ZoneFile {
    pub fn new(text: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "cascade-dc-{}-{:016x}.toml",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(ZoneFile(path))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Appends `text` in one write.
    pub fn append(&self, text: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.0)?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }
}

impl Drop for ZoneFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running `cascade dns` inside a namespace, stopped (SIGTERM, then SIGKILL) on
/// drop; its stderr is printed when the test panics.
#[derive(Debug)]
pub struct DnsProcess {
    service: ServiceProcess,
    /// The DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// `http://IP:PORT` of its HTTPDNS endpoint.
    pub http_base: String,
}

impl DnsProcess {
    /// `cascade dns --zone ZONE --listen LISTEN --http-listen HTTP_LISTEN` with
    /// [`PROBE_INTERVAL`] inside `ns`; waits for its `cascade dns listening:` line.
    /// Killed if the thread that started it exits first.
    pub fn start(
        ns: &Netns,
        zone: &ZoneFile,
        listen: SocketAddr,
        http_listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let cmd = ns.command(cascade_bin());
        let place = format!(" in {}", ns.name());
        Self::launch(
            cmd,
            zone.path(),
            listen,
            http_listen,
            PROBE_INTERVAL,
            &place,
        )
    }

    /// `cascade dns` run through `cmd` (the binary itself, or a wrapper such as
    /// `ip netns exec NS <binary>`) with these settings; waits for its
    /// `cascade dns listening:` line. `place` names where it runs, for errors.
    pub fn launch(
        mut cmd: Command,
        zone: &Path,
        listen: SocketAddr,
        http_listen: SocketAddr,
        probe_interval: Duration,
        place: &str,
    ) -> anyhow::Result<Self> {
        let bin = cascade_bin();
        if !bin.is_file() {
            bail!("no cascade binary at {}", bin.display());
        }
        cmd.arg("dns")
            .arg("--zone")
            .arg(zone)
            .args(["--listen", &listen.to_string()])
            .args(["--http-listen", &http_listen.to_string()])
            .args([
                "--probe-interval",
                &format!("{}ms", probe_interval.as_millis()),
            ]);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,hickory_server=warn");
        }
        let what = format!("{} dns{place}", bin.display());
        let (service, (dns, http_base)) = ServiceProcess::start(cmd, &what, parse_listening)?;
        Ok(DnsProcess {
            service,
            dns,
            http_base,
        })
    }

    /// The last lines it logged.
    pub fn stderr_tail(&self) -> String {
        self.service.stderr_tail()
    }

    /// `kill -9`, and waits until it is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.service.child.kill()?;
        self.service.child.wait()?;
        Ok(())
    }
}

impl Drop for DnsProcess {
    fn drop(&mut self) {
        let child = &mut self.service.child;
        crate::signal(child, libc::SIGTERM);
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- cascade dns ({}) stderr, last lines ----\n{}----",
                self.dns,
                self.stderr_tail()
            );
        }
    }
}

/// Parses `cascade dns listening: dns=udp://IP:PORT http=http://IP:PORT`.
fn parse_listening(line: &str) -> Option<(SocketAddr, String)> {
    let rest = line.trim().strip_prefix("cascade dns listening:")?;
    let mut dns = None;
    let mut http = None;
    for field in rest.split_whitespace() {
        if let Some(v) = field.strip_prefix("dns=udp://") {
            dns = v.parse().ok();
        } else if let Some(v) = field.strip_prefix("http=") {
            http = Some(v.trim_end_matches('/').to_string());
        }
    }
    Some((dns?, http?))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn addresses_and_records() {
        assert_eq!(member_url(0), "http://10.77.0.1");
        assert_eq!(server_ip(3), Ipv4Addr::new(10, 77, 0, 4));
        let record = server_record(1);
        assert!(record.contains("name = \"m2\""), "{record}");
        assert!(record.contains("health_url = \"http://10.77.0.2/healthz\""));
        let zone = format!("zone = \"{ZONE}\"\nttl = 1\n{record}");
        assert!(cascade_dns::zone::Zone::parse(&zone).is_ok(), "{zone}");
        assert_eq!(
            parse_listening(
                "cascade dns listening: dns=udp://10.77.0.53:53 http=http://10.77.0.53:8053"
            ),
            Some((
                "10.77.0.53:53".parse().unwrap(),
                "http://10.77.0.53:8053".into()
            ))
        );
    }
}
