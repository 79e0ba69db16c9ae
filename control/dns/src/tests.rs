//! `cascade dns` in process, over real loopback sockets: DNS over UDP and TCP, ECS,
//! health probes, zone reloads, HTTPDNS and SRV membership.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::membership::{MemberScheme, Membership, MembershipSource, resolve_srv};

/// A zone file in the temp directory, removed on drop.
struct TempZone(PathBuf);

impl TempZone {
    fn new(text: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cascade-dns-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        TempZone(path)
    }

    /// Replaces the file atomically (write aside, rename over).
    fn replace(&self, text: &str) {
        let tmp = self.0.with_extension("toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for TempZone {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An HTTP server on 127.0.0.1 that answers every request with a switchable status.
struct HealthEndpoint {
    url: String,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(200));
        let s = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let code = s.load(Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        HealthEndpoint { url, status, task }
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn zone_text(health_url: &str, extra: &str) -> String {
    format!(
        r#"
zone = "media.example.test"
ttl = 1
answers = 2
[[server]]
name = "m1"
address = "10.1.0.1"
region = "eu"
[[server]]
name = "m2"
address = "10.1.0.2"
region = "eu"
health_url = "{health_url}"
[[server]]
name = "m3"
address = "10.2.0.1"
region = "us"
[[server]]
name = "m4"
address = "10.2.0.2"
region = "us"
{extra}
[regions]
"10.1.0.0/16" = "eu"
"10.2.0.0/16" = "us"
[latency]
eu.us = 90
"#
    )
}

async fn start_dns(zone: &TempZone, probe: Duration) -> RunningDns {
    start(DnsConfig {
        zone_path: zone.0.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        probe_interval: probe,
        health_ca: Vec::new(),
    })
    .await
    .unwrap()
}

/// Sends one query over UDP, with an ECS option when `subnet` is given.
async fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    subnet: Option<(&str, u8)>,
) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some((ip, prefix)) = subnet {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                ip.parse().unwrap(),
                prefix,
                0,
            )));
    }
    msg.set_edns(edns);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("no DNS answer within 3 s")
        .unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, msg.metadata.id);
    answer
}

fn a_records(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    for bad in ["", "fast", "2h", "0s", "-1s", "5ms"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[tokio::test]
async fn ecs_ranks_by_region_and_echoes_the_scope() {
    let health = HealthEndpoint::start().await;
    let zone = TempZone::new(&zone_text(&health.url, ""));
    let dns = start_dns(&zone, Duration::from_secs(2)).await;

    let eu = query(
        dns.dns_addr,
        "media.example.test",
        RecordType::A,
        Some(("10.1.2.0", 24)),
    )
    .await;
    assert_eq!(eu.metadata.response_code, ResponseCode::NoError);
    assert!(eu.metadata.authoritative);
    assert_eq!(sorted(a_records(&eu)), ips(&["10.1.0.1", "10.1.0.2"]));
    let Some(EdnsOption::Subnet(ecs)) = eu.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
        panic!("no ECS option in the answer");
    };
    assert_eq!(
        (ecs.addr(), ecs.source_prefix(), ecs.scope_prefix()),
        ("10.1.2.0".parse().unwrap(), 24, 24)
    );

    let us = query(
        dns.dns_addr,
        "media.example.test",
        RecordType::A,
        Some(("10.2.0.0", 24)),
    )
    .await;
    assert_eq!(sorted(a_records(&us)), ips(&["10.2.0.1", "10.2.0.2"]));

    // A /16 source prefix: the answer holds for the whole /16.
    let wide = query(
        dns.dns_addr,
        "media.example.test",
        RecordType::A,
        Some(("10.2.0.0", 16)),
    )
    .await;
    let Some(EdnsOption::Subnet(ecs)) = wide.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
        panic!("no ECS option in the answer");
    };
    assert_eq!(ecs.scope_prefix(), 16);

    // Without ECS the resolver's own address (127.0.0.1, no region) decides: two of
    // the four, no ECS option back.
    let plain = query(dns.dns_addr, "media.example.test", RecordType::A, None).await;
    assert_eq!(a_records(&plain).len(), 2);
    assert!(
        plain
            .edns
            .as_ref()
            .unwrap()
            .option(EdnsCode::Subnet)
            .is_none()
    );

    let outside = query(dns.dns_addr, "example.org", RecordType::A, None).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    let missing = query(dns.dns_addr, "nope.media.example.test", RecordType::A, None).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    // HTTPDNS gives the very same ranking for the same client address.
    for ip in ["10.1.2.0", "10.2.0.0", "10.1.77.0", "192.0.2.0"] {
        let over_dns = query(
            dns.dns_addr,
            "media.example.test",
            RecordType::A,
            Some((ip, 24)),
        )
        .await;
        let over_http =
            http::resolve_for(&dns.state, "media.example.test.", ip.parse().unwrap()).unwrap();
        let http_ips: Vec<IpAddr> = over_http.answers.iter().map(|a| a.address).collect();
        assert_eq!(a_records(&over_dns), http_ips, "client {ip}");
    }
    assert!(
        http::resolve_for(
            &dns.state,
            "other.example.test",
            "10.1.2.3".parse().unwrap()
        )
        .is_none()
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn a_failing_probe_removes_the_server_until_it_recovers() {
    let health = HealthEndpoint::start().await;
    let zone = TempZone::new(&zone_text(&health.url, ""));
    let interval = Duration::from_millis(200);
    let dns = start_dns(&zone, interval).await;
    let eu = Some(("10.1.2.0", 24));

    let ans = query(dns.dns_addr, "media.example.test", RecordType::A, eu).await;
    assert_eq!(sorted(a_records(&ans)), ips(&["10.1.0.1", "10.1.0.2"]));

    health.status.store(500, Ordering::Relaxed);
    let failed_at = Instant::now();
    eventually("m2 out of the answers", interval * 4, async || {
        let ans = query(dns.dns_addr, "media.example.test", RecordType::A, eu).await;
        !a_records(&ans).contains(&"10.1.0.2".parse().unwrap())
    })
    .await;
    assert!(
        failed_at.elapsed() <= interval * 2 + Duration::from_millis(300),
        "{:?}",
        failed_at.elapsed()
    );
    let ans = query(dns.dns_addr, "media.example.test", RecordType::A, eu).await;
    assert_eq!(a_records(&ans)[0], "10.1.0.1".parse::<IpAddr>().unwrap());
    let srv = resolve_srv(
        "_cascade._tcp.media.example.test",
        dns.dns_addr,
        MemberScheme::Https,
    )
    .await
    .unwrap();
    assert_eq!(srv.members.len(), 3);

    health.status.store(200, Ordering::Relaxed);
    eventually("m2 back in the answers", interval * 4, async || {
        let ans = query(dns.dns_addr, "media.example.test", RecordType::A, eu).await;
        a_records(&ans).contains(&"10.1.0.2".parse().unwrap())
    })
    .await;
    dns.shutdown().await;
}

#[tokio::test]
async fn zone_changes_reach_srv_membership_and_bad_files_are_ignored() {
    let health = HealthEndpoint::start().await;
    let zone = TempZone::new(&zone_text(&health.url, ""));
    let dns = start_dns(&zone, Duration::from_secs(2)).await;

    let membership = Membership::start(MembershipSource::Srv {
        name: "_cascade._tcp.media.example.test".into(),
        resolver: dns.dns_addr,
        scheme: MemberScheme::Https,
    })
    .await;
    let ids: Vec<String> = membership.members().iter().map(|m| m.id.clone()).collect();
    assert_eq!(
        ids,
        [
            "m1.media.example.test:443",
            "m2.media.example.test:443",
            "m3.media.example.test:443",
            "m4.media.example.test:443"
        ]
    );
    // The answer carries the targets' addresses: URLs use them.
    assert_eq!(membership.members()[0].url, "https://10.1.0.1");

    // A file that does not parse is ignored: the zone stays as it was.
    zone.replace("zone = \"media.example.test\"\n[[server]]\nname = ");
    tokio::time::sleep(RELOAD_POLL * 2 + Duration::from_millis(200)).await;
    assert_eq!(dns.state.zone().servers.len(), 4);
    let ans = query(
        dns.dns_addr,
        "media.example.test",
        RecordType::A,
        Some(("10.2.0.0", 24)),
    )
    .await;
    assert_eq!(sorted(a_records(&ans)), ips(&["10.2.0.1", "10.2.0.2"]));

    // A fifth server appears in SRV, and in the members, without a restart.
    let fifth = "[[server]]\nname = \"m5\"\naddress = \"10.2.0.3\"\nregion = \"us\"\nport = 8443\n";
    zone.replace(&zone_text(&health.url, fifth));
    eventually("m5 in the SRV answer", Duration::from_secs(5), async || {
        let srv = resolve_srv(
            "_cascade._tcp.media.example.test",
            dns.dns_addr,
            MemberScheme::Https,
        )
        .await
        .unwrap();
        srv.members
            .iter()
            .any(|m| m.id == "m5.media.example.test:8443")
    })
    .await;
    // The zone's TTL is 1 s, so the membership follows within a couple of seconds.
    eventually("m5 in the membership", Duration::from_secs(5), async || {
        membership
            .members()
            .iter()
            .any(|m| m.id == "m5.media.example.test:8443")
    })
    .await;
    assert_eq!(membership.members().len(), 5);
    let fifth_member = membership
        .members()
        .iter()
        .find(|m| m.id.starts_with("m5."))
        .cloned()
        .unwrap();
    assert_eq!(fifth_member.url, "https://10.2.0.3:8443");
    assert!(dns.state.zone().serial > 1);

    // With the DNS server gone, a resolution fails and the last members stay.
    dns.shutdown().await;
    let wait = membership.refresh().await;
    assert_eq!(wait, Duration::from_secs(5));
    assert_eq!(membership.members().len(), 5);
}

#[tokio::test]
async fn tcp_answers_too() {
    let health = HealthEndpoint::start().await;
    let zone = TempZone::new(&zone_text(&health.url, ""));
    let dns = start_dns(&zone, Duration::from_secs(2)).await;
    let mut msg = Message::query();
    msg.add_query(Query::query(
        Name::from_ascii("_cascade._tcp.media.example.test.").unwrap(),
        RecordType::SRV,
    ));
    let bytes = msg.to_vec().unwrap();
    let mut conn = tokio::net::TcpStream::connect(dns.dns_addr).await.unwrap();
    conn.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&bytes).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), conn.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; n.into()];
    conn.read_exact(&mut buf).await.unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(answer.answers.len(), 4);
    dns.shutdown().await;
}

#[tokio::test]
async fn httpdns_over_http() {
    let health = HealthEndpoint::start().await;
    let zone = TempZone::new(&zone_text(&health.url, ""));
    let dns = start_dns(&zone, Duration::from_secs(2)).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://{}", dns.http_addr);
    let body: serde_json::Value = client
        .get(format!(
            "{base}/resolve?name=media.example.test&ip=10.2.3.4"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["name"], "media.example.test");
    assert_eq!(body["client_ip"], "10.2.3.4");
    assert_eq!(body["region"], "us");
    assert_eq!(body["ttl"], 1);
    let answers = body["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2);
    for a in answers {
        assert_eq!(a["region"], "us");
        assert_eq!(a["latency_ms"], 0);
        assert!(a["name"].as_str().unwrap().ends_with(".media.example.test"));
    }
    let resp = client
        .get(format!("{base}/resolve?name=other.test&ip=10.2.3.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .get(format!("{base}/resolve?ip=not-an-ip"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // No ip: the caller's address (127.0.0.1, no region).
    let body: serde_json::Value = client
        .get(format!("{base}/resolve"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["client_ip"], "127.0.0.1");
    assert!(body["region"].is_null());
    dns.shutdown().await;
}
