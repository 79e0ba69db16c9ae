//! A data centre in network namespaces whose servers are configured by nothing but
//! what `cascade cluster issue` wrote for them: each serves HTTPS on port 443 of
//! its own address with its issued certificate, trusts the cluster CA, signs relay
//! tokens with the cluster secret, and reads its membership from the SRV records of
//! a `cascade dns` that probes their HTTPS `/healthz` trusting the same CA
//! (`--health-ca`).
//!
//! 1. Three servers m1..m3 place rooms over three members.
//! 2. m4, with freshly issued credentials, joins by its record being appended to the
//!    zone: within seconds the others send it the rooms it now owns.
//! 3. A room m4 now owns whose publisher stayed on its former owner: a room-wide
//!    subscriber asking m1 lands on m4, which cascades the publication from the
//!    former owner over verified TLS, and gets its media.
//! 4. A cluster token signed with another cluster's secret gets no relay keys
//!    (401), while the issued secret's does.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cascade_core::placement::{Member, rank};
use cascade_core::token::{Claims, Grant, TokenSecret, mint, mint_cluster};
use cascade_dns::membership::{MemberScheme, resolve_srv};
use cascade_peer::PeerRole;
use cascade_tests::dc::{DnsProcess, PROBE_INTERVAL, ZoneFile};
use cascade_tests::media::LivePeer;
use cascade_tests::netns::{self, Netns};
use cascade_tests::{ServerProcess, cascade_bin, http_client, require};

const SECRET: &str = "cluster-join-users-0123456789abcdef";
const ZONE: &str = "dc1.cascade.test";
const SRV_NAME: &str = "_cascade._tcp.dc1.cascade.test";
const VIDEO_SSRC: u32 = 0x0d0e_0002;
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: 0x0d0e_0001,
    video_ssrc: VIDEO_SSRC,
};

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, n)
}
fn server_ip(i: usize) -> Ipv4Addr {
    ip(u8::try_from(i + 1).unwrap())
}
fn url(i: usize) -> String {
    format!("https://{}", server_ip(i))
}
const DNS_IP: u8 = 53;
const CLIENT_IP: u8 = 100;

fn record(i: usize) -> String {
    let a = server_ip(i);
    format!(
        "\n[[server]]\nname = \"m{n}\"\naddress = \"{a}\"\nregion = \"dc1\"\nport = 443\n\
         health_url = \"https://{a}/healthz\"\n",
        n = i + 1
    )
}

fn members(n: usize) -> Vec<Member> {
    let mut m: Vec<Member> = (0..n)
        .map(|i| Member::new(format!("m{}.{ZONE}:443", i + 1), url(i)))
        .collect();
    m.sort();
    m
}

fn owner(room: &str, members: &[Member]) -> usize {
    let u = &rank(room, members)[0].url;
    (0..4).find(|&i| url(i) == *u).unwrap()
}

fn server_of(resource: &str) -> usize {
    (0..4)
        .find(|&i| resource.starts_with(&format!("{}/", url(i))))
        .unwrap_or_else(|| panic!("{resource} is on no server"))
}

fn token(room: &str) -> String {
    let now = cascade::unix_now();
    let claims = Claims {
        sub: "u".into(),
        room: room.into(),
        grants: vec![Grant::Publish, Grant::Subscribe],
        exp: now + 600,
        iat: now,
    };
    mint(&TokenSecret::parse(SECRET), &claims).unwrap()
}

fn cascade(args: &[&str]) {
    let out = Command::new(cascade_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "cascade {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn wait_until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: not within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

async fn publish(via: usize, room: &str) -> LivePeer {
    try_publish(via, room)
        .await
        .unwrap_or_else(|e| panic!("publish {room} via m{}: {e:#}", via + 1))
}

async fn try_publish(via: usize, room: &str) -> anyhow::Result<LivePeer> {
    LivePeer::connect_from(
        &url(via),
        (ip(CLIENT_IP), 0).into(),
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token(room),
        PUBLISHER,
        Some(VIDEO_SSRC),
    )
    .await
}

/// The member ids the DNS lists in SRV (none when it does not answer).
async fn srv_members(dns: &str) -> Vec<String> {
    match resolve_srv(SRV_NAME, dns.parse().unwrap(), MemberScheme::Https).await {
        Ok(a) => {
            let mut ids: Vec<String> = a.members.into_iter().map(|m| m.id).collect();
            ids.sort();
            ids
        }
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_server_with_issued_credentials_joins_by_its_dns_record() {
    if !netns::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let n: u64 = rand::random();
    let root = TempDir(std::env::temp_dir().join(format!("cascade-join-{n:016x}")));
    let ca = root.0.join("ca");
    let other = root.0.join("other");
    cascade(&["cluster", "init", "--dir", s(&ca)]);
    cascade(&["cluster", "init", "--dir", s(&other)]);
    let issued: Vec<PathBuf> = (0..4)
        .map(|i| {
            let out = root.0.join(format!("m{}", i + 1));
            let ip = server_ip(i).to_string();
            cascade(&[
                "cluster",
                "issue",
                "--ca-dir",
                s(&ca),
                "--name",
                &format!("m{}", i + 1),
                "--ip",
                &ip,
                "--dns",
                &format!("m{}.{ZONE}", i + 1),
                "--out",
                s(&out),
            ]);
            out
        })
        .collect();

    // The topology: one bridge, the client, the DNS, four servers.
    let switch = Netns::new("join-switch").unwrap();
    let mut bridge = switch.bridge("br0").unwrap();
    let client = Netns::new("join-client").unwrap();
    bridge
        .connect(&client, "eth0", &format!("{}/24", ip(CLIENT_IP)))
        .unwrap();
    let dns_host = Netns::new("join-dns").unwrap();
    bridge
        .connect(&dns_host, "eth0", &format!("{}/24", ip(DNS_IP)))
        .unwrap();
    let hosts: Vec<Netns> = (0..4)
        .map(|i| {
            let ns = Netns::new(&format!("join-m{}", i + 1)).unwrap();
            bridge
                .connect(&ns, "eth0", &format!("{}/24", server_ip(i)))
                .unwrap();
            ns
        })
        .collect();
    let zone = ZoneFile::new(&format!(
        "zone = \"{ZONE}\"\nttl = 1\nanswers = 4\n{}{}{}",
        record(0),
        record(1),
        record(2)
    ))
    .unwrap();
    let mut dns_cmd = dns_host.command(cascade_bin());
    dns_cmd.env("CASCADE_DNS_HEALTH_CA", ca.join("ca.pem"));
    let dns = DnsProcess::launch(
        dns_cmd,
        zone.path(),
        (ip(DNS_IP), 53).into(),
        (ip(DNS_IP), 8053).into(),
        PROBE_INTERVAL,
        " in join-dns",
    )
    .unwrap();
    let dns_addr = dns.dns.to_string();
    let servers: Vec<ServerProcess> = hosts
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let a = server_ip(i);
            ns.spawn_server(&[
                "--config".to_string(),
                s(&issued[i].join("cascade.toml")).to_owned(),
                "--token-secret".into(),
                SECRET.into(),
                "--http-listen".into(),
                format!("{a}:443"),
                "--media-listen".into(),
                format!("{a}:0"),
                "--public-url".into(),
                url(i),
                "--members-srv".into(),
                SRV_NAME.into(),
                "--members-dns".into(),
                dns_addr.clone(),
            ])
            .unwrap_or_else(|e| panic!("m{}: {e:#}", i + 1))
        })
        .collect();
    assert!(servers[0].http_base.starts_with("https://"));

    client.enter(|| {
        let rt = runtime();
        rt.block_on(async {
            let three: Vec<String> = members(3).into_iter().map(|m| m.id).collect();
            let took = wait_until("SRV lists m1..m3 (healthy over HTTPS)", || async {
                srv_members(&dns_addr).await == three
            })
            .await;
            eprintln!("step 1: the DNS lists three members after {took:.1?}");
            let m3 = members(3);
            let took =
                wait_until("m1..m3 place over three members", || places_over(0..3, &m3)).await;
            eprintln!("step 1: m1..m3 place rooms over three members after {took:.1?}");

            // A room m4 will own, published now on its owner among three.
            let room = loop {
                let r = cascade_tests::random_room("join");
                if owner(&r, &members(4)) == 3 {
                    break r;
                }
            };
            let before = owner(&room, &members(3));
            let publisher = publish(0, &room).await;
            assert_eq!(
                server_of(&publisher.resource),
                before,
                "{room} before m4 joins"
            );

            // 2. m4 joins by its record.
            zone.append(&record(3)).unwrap();
            let joined = Instant::now();
            let four: Vec<String> = members(4).into_iter().map(|m| m.id).collect();
            let listed = wait_until("SRV lists m4", || async {
                srv_members(&dns_addr).await == four
            })
            .await;
            eprintln!("step 2: the DNS lists m4 {listed:.1?} after its record was appended");
            // New rooms of m4, published via m1, land on m4.
            let mut first_on_m4 = None;
            let mut kept = Vec::new();
            while first_on_m4.is_none() {
                assert!(
                    joined.elapsed() < Duration::from_secs(20),
                    "m4 takes no room"
                );
                let r = loop {
                    let r = cascade_tests::random_room("new");
                    if owner(&r, &members(4)) == 3 {
                        break r;
                    }
                };
                // Until m4's own next SRV lookup it does not know it is a member and
                // sends its rooms back (a redirect loop for that moment): try again.
                if let Ok(p) = try_publish(0, &r).await {
                    if server_of(&p.resource) == 3 {
                        first_on_m4 = Some(joined.elapsed());
                    }
                    kept.push(p);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!(
                "step 2: a new room of m4 landed on m4 {:.1?} after its record was appended",
                first_on_m4.unwrap()
            );

            // 3. The room m4 now owns, its publisher still on the former owner: a
            // room-wide subscriber via m1 lands on m4, which cascades it over TLS.
            let subscriber = wait_for_subscriber(&room).await;
            assert_eq!(
                server_of(&subscriber.resource),
                3,
                "{}",
                subscriber.resource
            );
            wait_until("media through m4 from the former owner", || async {
                subscriber.received() > 100
            })
            .await;
            eprintln!(
                "step 3: m{} -> m4 over HTTPS: {} packets",
                before + 1,
                subscriber.received()
            );

            // 4. Another cluster's secret gets no relay keys; this cluster's does.
            let relay = format!("{}/relay", publisher.resource);
            let secret_of = |dir: &Path| {
                std::fs::read_to_string(dir.join("cluster-secret"))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            let client = reqwest::Client::builder()
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&std::fs::read(ca.join("ca.pem")).unwrap())
                        .unwrap(),
                )
                .no_proxy()
                .build()
                .unwrap();
            for (dir, want) in [(&other, 401), (&ca, 201)] {
                let t = mint_cluster(
                    &TokenSecret::parse(&secret_of(dir)),
                    "https://10.78.0.100",
                    cascade::unix_now(),
                    60,
                )
                .unwrap();
                let r = client
                    .post(&relay)
                    .bearer_auth(t)
                    .json(&serde_json::json!({ "relay_addr": format!("{}:9", ip(CLIENT_IP)) }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), want, "relay with {}", dir.display());
                if want == 201 {
                    // The verified client accepted the origin's issued certificate.
                    let answer: serde_json::Value = r.json().await.unwrap();
                    let close = answer["relay"].as_str().unwrap().to_owned();
                    let t = mint_cluster(
                        &TokenSecret::parse(&secret_of(&ca)),
                        "https://10.78.0.100",
                        cascade::unix_now(),
                        60,
                    )
                    .unwrap();
                    let _ = http_client().delete(close).bearer_auth(t).send().await;
                }
            }
            drop(kept);
        });
    });
    drop(servers);
    drop(dns);
}

/// A room-wide subscriber of `room` via m1 (retried while m1 still places over
/// three members).
async fn wait_for_subscriber(room: &str) -> LivePeer {
    let start = Instant::now();
    loop {
        let peer = LivePeer::connect_from(
            &url(0),
            (ip(CLIENT_IP), 0).into(),
            &format!("/rtc/v1/rooms/{room}/subscribe"),
            &token(room),
            PeerRole::Subscriber,
            None,
        )
        .await;
        match peer {
            Ok(peer) if server_of(&peer.resource) == 3 => return peer,
            Ok(_) | Err(_) if start.elapsed() < Duration::from_secs(20) => {}
            Ok(peer) => return peer,
            Err(e) => panic!("subscribe {room} via m1: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether servers `vias` all send rooms to their owner among `members` (a probe
/// publish with no offer: 400 from the owner, a redirect to it from the others).
async fn places_over(vias: std::ops::Range<usize>, members: &[Member]) -> bool {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .unwrap();
    for k in 0..8 {
        let room = format!("probe-{k}");
        let owner = owner(&room, members);
        for via in vias.clone() {
            let Ok(resp) = client
                .post(format!("{}/rtc/v1/rooms/{room}/publish", url(via)))
                .bearer_auth(token(&room))
                .header("content-type", "application/sdp")
                .body("not an offer")
                .send()
                .await
            else {
                return false;
            };
            let to = match resp.status().as_u16() {
                400 => Some(via),
                307 => resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| (0..4).find(|&i| l.starts_with(&format!("{}/", url(i))))),
                _ => None,
            };
            if to != Some(owner) {
                return false;
            }
        }
    }
    true
}
