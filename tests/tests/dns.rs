//! `cascade dns` as a real process, queried with a real `dig`: client-subnet ranking,
//! health probes taking a server out and back, HTTPDNS agreeing with DNS, HTTPS
//! records (RFC 9460) offering HTTP/3, and a server appended to the zone file
//! showing up in SRV without a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_tests::dc::DnsProcess;
use cascade_tests::{cascade_bin, command_available, http_client, require};
use serde_json::Value;

const ZONE_NAME: &str = "media.example.test";
const SRV_NAME: &str = "_cascade._tcp.media.example.test";
const PROBE_INTERVAL: Duration = Duration::from_millis(300);

const EU: [&str; 2] = ["10.1.0.1", "10.1.0.2"];
const US: [&str; 2] = ["10.2.0.1", "10.2.0.2"];

fn tools_present() -> bool {
    require(
        cascade_bin().is_file(),
        &format!(
            "the cascade binary at {} (run `cargo build -p cascade` or set CASCADE_BIN)",
            cascade_bin().display()
        ),
    ) && require(
        command_available("dig"),
        "dig (Debian package bind9-dnsutils)",
    )
}

/// Four servers in two regions; m3 (us) is probed at `health_url`.
fn zone_text(health_url: &str) -> String {
    format!(
        r#"zone = "{ZONE_NAME}"
ttl = 5
answers = 2

[regions]
"10.1.0.0/16" = "eu"
"10.2.0.0/16" = "us"

[latency]
eu.us = 90

[[server]]
name = "m1"
address = "10.1.0.1"
region = "eu"

[[server]]
name = "m2"
address = "10.1.0.2"
region = "eu"

[[server]]
name = "m3"
address = "10.2.0.1"
region = "us"
health_url = "{health_url}"

[[server]]
name = "m4"
address = "10.2.0.2"
region = "us"
"#
    )
}

/// A zone file in the temp directory, removed on drop.
struct ZoneFile(PathBuf);

impl ZoneFile {
    fn new(text: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "cascade-dns-e2e-{}-{:016x}.toml",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, text)?;
        Ok(ZoneFile(path))
    }

    fn append(&self, text: &str) -> anyhow::Result<()> {
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

/// An HTTP server on 127.0.0.1 that answers every request with a status the test
/// switches (200 or 500); stopped on drop.
struct HealthEndpoint {
    url: String,
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthEndpoint {
    fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let status = status.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("health-endpoint".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let Ok(mut conn) = conn else { continue };
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut chunk) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let code = status.load(Ordering::Relaxed);
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {code} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                    }
                })?
        };
        Ok(HealthEndpoint {
            url: format!("http://{addr}/healthz"),
            addr,
            status,
            stop,
            thread: Some(thread),
        })
    }

    fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept so the thread sees the flag.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `cascade dns` on loopback (stopped on drop), and the queries these tests make
/// of it.
struct Dns(DnsProcess);

impl Dns {
    fn start(zone: &ZoneFile) -> anyhow::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let cmd = Command::new(cascade_bin());
        DnsProcess::launch(cmd, &zone.0, any, any, PROBE_INTERVAL, "").map(Self)
    }

    /// `dig @127.0.0.1 -p PORT args... +short`, one answer per line.
    async fn dig_short(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let out = self.dig(&[args, &["+short"]].concat()).await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    async fn dig(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new("dig")
            .arg("@127.0.0.1")
            .args(["-p", &self.0.dns.port().to_string()])
            .args(args)
            .args(["+time=2", "+tries=2"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run dig")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || stdout.contains("connection timed out") {
            bail!(
                "dig {args:?} failed ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// The A records dig gets for the zone name with `+subnet=SUBNET`, in order.
    async fn ranked(&self, subnet: &str) -> anyhow::Result<Vec<String>> {
        self.dig_short(&[ZONE_NAME, "A", &format!("+subnet={subnet}")])
            .await
    }

    /// HTTPDNS addresses for `ip`, in order.
    async fn resolve(&self, ip: &str) -> anyhow::Result<(Value, Vec<String>)> {
        let body: Value = http_client()
            .get(format!("{}/resolve", self.0.http_base))
            .query(&[("name", ZONE_NAME), ("ip", ip)])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let addrs = body["answers"]
            .as_array()
            .context("no answers array")?
            .iter()
            .map(|a| a["address"].as_str().unwrap_or_default().to_string())
            .collect();
        Ok((body, addrs))
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn dig_gets_the_nearest_servers_and_httpdns_agrees() -> anyhow::Result<()> {
    if !tools_present() {
        return Ok(());
    }
    let health = HealthEndpoint::start()?;
    let zone = ZoneFile::new(&zone_text(&health.url))?;
    let dns = Dns::start(&zone)?;

    let eu = dns.ranked("10.1.2.0/24").await?;
    assert_eq!(sorted(eu.clone()), strings(&EU), "eu client got {eu:?}");
    let us = dns.ranked("10.2.0.0/24").await?;
    assert_eq!(sorted(us.clone()), strings(&US), "us client got {us:?}");

    // The client subnet comes back with its scope: the answer depends on the /24.
    let full = dns.dig(&[ZONE_NAME, "A", "+subnet=10.1.2.0/24"]).await?;
    assert!(
        full.contains("CLIENT-SUBNET: 10.1.2.0/24/24"),
        "no ECS scope in:\n{full}"
    );
    assert!(full.contains("flags: qr aa"), "not authoritative:\n{full}");

    // HTTPDNS ranks exactly as DNS does, for the same client address.
    for subnet in [
        "10.1.2.0/24",
        "10.2.0.0/24",
        "10.1.200.0/24",
        "10.2.9.0/24",
        "192.0.2.0/24",
    ] {
        let ip = subnet.split('/').next().unwrap();
        let over_dns = dns.ranked(subnet).await?;
        let (body, over_http) = dns.resolve(ip).await?;
        assert_eq!(over_dns, over_http, "client {subnet}: dig vs {body}");
        assert_eq!(body["name"], ZONE_NAME);
        assert_eq!(body["client_ip"], ip);
        assert_eq!(body["ttl"], 5);
    }
    let (body, _) = dns.resolve("10.1.2.3").await?;
    assert_eq!(body["region"], "eu");
    assert_eq!(body["answers"][0]["region"], "eu");
    assert_eq!(body["answers"][0]["latency_ms"], 0);

    // Names outside the zone are refused; unknown names inside it do not exist.
    let outside = dns.dig(&["example.org", "A"]).await?;
    assert!(outside.contains("status: REFUSED"), "{outside}");
    let unknown = dns.dig(&["nope.media.example.test", "A"]).await?;
    assert!(unknown.contains("status: NXDOMAIN"), "{unknown}");
    // Each server's own name resolves to its address.
    assert_eq!(
        dns.dig_short(&["m3.media.example.test", "A"]).await?,
        strings(&["10.2.0.1"])
    );
    Ok(())
}

#[tokio::test]
async fn https_records_offer_http3_on_each_server_in_ranking_order() -> anyhow::Result<()> {
    if !tools_present() {
        return Ok(());
    }
    let health = HealthEndpoint::start()?;
    let zone = ZoneFile::new(&zone_text(&health.url))?;
    let dns = Dns::start(&zone)?;

    // At the zone name: one ServiceMode record per ranked server, best first, in the
    // order of the A answer for the same client.
    for subnet in ["10.1.2.0/24", "10.2.0.0/24"] {
        let ecs = format!("+subnet={subnet}");
        let https = dns.dig_short(&[ZONE_NAME, "HTTPS", &ecs]).await?;
        let ranked = dns.ranked(subnet).await?;
        let expected: Vec<String> = ranked
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let name = match ip.as_str() {
                    "10.1.0.1" => "m1",
                    "10.1.0.2" => "m2",
                    "10.2.0.1" => "m3",
                    _ => "m4",
                };
                format!(
                    "{} {name}.{ZONE_NAME}. alpn=\"h3,h2\" port=443 ipv4hint={ip}",
                    i + 1
                )
            })
            .collect();
        assert_eq!(https, expected, "client {subnet}");
    }
    // The targets' addresses come along, so no second query is needed.
    let full = dns
        .dig(&[ZONE_NAME, "HTTPS", "+subnet=10.1.2.0/24"])
        .await?;
    let additional = full
        .split("ADDITIONAL SECTION")
        .nth(1)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    assert!(
        additional.contains("m1.media.example.test. 5 IN A 10.1.0.1"),
        "{full}"
    );
    // At a server's own name: target `.` (the name itself).
    assert_eq!(
        dns.dig_short(&["m3.media.example.test", "HTTPS"]).await?,
        strings(&["1 . alpn=\"h3,h2\" port=443 ipv4hint=10.2.0.1"])
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_server_leaves_the_answers_and_comes_back() -> anyhow::Result<()> {
    if !tools_present() {
        return Ok(());
    }
    let health = HealthEndpoint::start()?;
    let zone = ZoneFile::new(&zone_text(&health.url))?;
    let dns = Dns::start(&zone)?;
    let us_subnet = "10.2.0.0/24";
    assert_eq!(sorted(dns.ranked(us_subnet).await?), strings(&US));

    health.set_status(500);
    let failed_at = Instant::now();
    let gone_after = loop {
        let answers = dns.ranked(us_subnet).await?;
        if !answers.iter().any(|a| a == "10.2.0.1") {
            // The other us server leads, an eu server follows.
            assert_eq!(answers[0], "10.2.0.2", "{answers:?}");
            assert!(EU.contains(&answers[1].as_str()), "{answers:?}");
            break failed_at.elapsed();
        }
        assert!(
            failed_at.elapsed() < Duration::from_secs(5),
            "m3 still answered 5 s after its health check failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Within two probe intervals (plus the time one dig takes).
    assert!(
        gone_after <= PROBE_INTERVAL * 2 + Duration::from_millis(300),
        "m3 left the answers only after {gone_after:?}"
    );
    let srv = dns.dig_short(&[SRV_NAME, "SRV"]).await?;
    assert_eq!(srv.len(), 3, "{srv:?}");
    assert!(!srv.iter().any(|r| r.contains("m3.")), "{srv:?}");
    // HTTPDNS agrees while m3 is out.
    let (_, over_http) = dns.resolve("10.2.0.0").await?;
    assert_eq!(over_http, dns.ranked(us_subnet).await?);

    health.set_status(200);
    let recovered_at = Instant::now();
    loop {
        let answers = dns.ranked(us_subnet).await?;
        if sorted(answers.clone()) == strings(&US) {
            break;
        }
        assert!(
            recovered_at.elapsed() < Duration::from_secs(5),
            "m3 not back 5 s after recovering: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered_at.elapsed() <= PROBE_INTERVAL * 2 + Duration::from_millis(300));
    Ok(())
}

#[tokio::test]
async fn a_server_appended_to_the_zone_file_appears_in_srv() -> anyhow::Result<()> {
    if !tools_present() {
        return Ok(());
    }
    let health = HealthEndpoint::start()?;
    let zone = ZoneFile::new(&zone_text(&health.url))?;
    let dns = Dns::start(&zone)?;

    let srv = dns.dig_short(&[SRV_NAME, "SRV"]).await?;
    assert_eq!(
        sorted(srv.clone()),
        strings(&[
            "0 1 443 m1.media.example.test.",
            "0 1 443 m2.media.example.test.",
            "0 1 443 m3.media.example.test.",
            "0 1 443 m4.media.example.test.",
        ]),
        "{srv:?}"
    );

    zone.append(
        "\n[[server]]\nname = \"m5\"\naddress = \"10.2.0.3\"\nregion = \"us\"\nport = 8443\n",
    )?;
    let appended_at = Instant::now();
    loop {
        let srv = dns.dig_short(&[SRV_NAME, "SRV"]).await?;
        if srv.iter().any(|r| r == "0 1 8443 m5.media.example.test.") {
            assert_eq!(srv.len(), 5, "{srv:?}");
            break;
        }
        assert!(
            appended_at.elapsed() < Duration::from_secs(10),
            "m5 not in the SRV answer 10 s after it was added: {srv:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        dns.dig_short(&["m5.media.example.test", "A"]).await?,
        strings(&["10.2.0.3"])
    );
    // The new server now shares the us answers (three us servers, two answers each).
    let mut seen_m5 = false;
    for i in 0..64 {
        let answers = dns.ranked(&format!("10.2.{i}.0/24")).await?;
        assert_eq!(answers.len(), 2);
        assert!(
            answers.iter().all(|a| a.starts_with("10.2.")),
            "{answers:?}"
        );
        seen_m5 |= answers.iter().any(|a| a == "10.2.0.3");
        if seen_m5 {
            break;
        }
    }
    assert!(seen_m5, "m5 never in an answer for 64 us subnets");
    Ok(())
}
