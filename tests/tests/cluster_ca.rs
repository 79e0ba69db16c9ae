//! Cluster trust from `cascade cluster`: a CA made by `cascade cluster init`, two
//! servers started with nothing but what `cascade cluster issue` wrote for them
//! (`--config <issued>/cascade.toml`, plus the users' token secret) cascade a
//! publication over verified HTTPS; `cascade check-config` accepts the issued
//! configuration; `cascade dns --health-ca` probes their HTTPS health; a server issued by another cluster gets no relay keys, and a
//! cluster token signed with its secret is refused by the origin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cascade_core::token::{TokenSecret, mint_cluster};
use cascade_peer::PeerRole;
use cascade_tests::dc::{DnsProcess, ZoneFile};
use cascade_tests::media::LivePeer;
use cascade_tests::{
    ServerProcess, cascade_bin, http_client, metric, mint_token, random_room, require,
};

const SECRET: &str = "cluster-ca-test-users";

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cascade ARGS`, asserting success; its standard output.
fn cascade(args: &[&str]) -> String {
    let out = Command::new(cascade_bin()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cascade {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `cascade cluster issue` for a server on 127.0.0.1 into `root/name`.
fn issue(ca: &Path, root: &Path, name: &str) -> PathBuf {
    let out = root.join(name);
    cascade(&[
        "cluster",
        "issue",
        "--ca-dir",
        s(ca),
        "--name",
        name,
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--out",
        s(&out),
    ]);
    out
}

fn start(issued: &Path) -> ServerProcess {
    ServerProcess::start(&[
        "--config",
        s(&issued.join("cascade.toml")),
        "--token-secret",
        SECRET,
    ])
    .expect("server starts with its issued credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_issued_credentials_cascade_over_verified_tls() {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let n: u64 = rand::random();
    let root = TempDir(std::env::temp_dir().join(format!("cascade-cluster-{n:016x}")));
    let (ca, other_ca) = (root.0.join("ca"), root.0.join("other-ca"));
    cascade(&["cluster", "init", "--dir", s(&ca)]);
    cascade(&["cluster", "init", "--dir", s(&other_ca)]);
    let (m1_dir, m2_dir) = (issue(&ca, &root.0, "m1"), issue(&ca, &root.0, "m2"));
    let rogue_dir = issue(&other_ca, &root.0, "rogue");

    let report = cascade(&[
        "check-config",
        "--config",
        s(&m1_dir.join("cascade.toml")),
        "--token-secret",
        "0123456789abcdef0123456789abcdef",
        "--http-listen",
        "127.0.0.1:0",
        "--media-listen",
        "127.0.0.1:0",
    ]);
    assert!(report.contains("0 error(s)"), "{report}");
    assert!(
        report.contains("ok: the TLS certificate is issued by the cluster CA"),
        "{report}"
    );

    let (m1, m2, rogue) = (start(&m1_dir), start(&m2_dir), start(&rogue_dir));
    assert!(m1.http_base.starts_with("https://"), "{}", m1.http_base);

    // `cascade dns` probes the servers' HTTPS /healthz, trusting the cluster CA:
    // m1 and m2 are healthy, the other cluster's server is not.
    let zone = ZoneFile::new(&format!(
        "zone = \"issued.test\"\n{}",
        [("m1", &m1), ("m2", &m2), ("rogue", &rogue)]
            .iter()
            .enumerate()
            .map(|(i, (name, m))| format!(
                "[[server]]\nname = \"{name}\"\naddress = \"10.9.0.{}\"\nregion = \"eu\"\n\
                 health_url = \"{}/healthz\"\n",
                i + 1,
                m.http_base
            ))
            .collect::<String>()
    ))
    .unwrap();
    let mut dns_cmd = Command::new(cascade_bin());
    dns_cmd.env("CASCADE_DNS_HEALTH_CA", ca.join("ca.pem"));
    let any = "127.0.0.1:0".parse().unwrap();
    let dns = DnsProcess::launch(
        dns_cmd,
        zone.path(),
        any,
        any,
        Duration::from_millis(200),
        "",
    )
    .unwrap();
    let servers: serde_json::Value = http_client()
        .get(format!("{}/servers", dns.http_base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let healthy: Vec<(&str, bool)> = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["healthy"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        healthy,
        [("m1", true), ("m2", true), ("rogue", false)],
        "{servers}"
    );
    let room = random_room("issued");
    let token = mint_token(SECRET, &room, "u", &["publish", "subscribe"], None).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let publisher = LivePeer::connect_from(
        &m1.http_base,
        local,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
        Some(0x2222),
    )
    .await
    .unwrap();
    let subscribe_path = format!(
        "/rtc/v1/rooms/{room}/subscribe?resource={}",
        publisher.resource
    );

    // Issued by the same CA: m2 verifies m1, obtains the relay, media flows.
    let subscriber = LivePeer::connect_from(
        &m2.http_base,
        local,
        &subscribe_path,
        &token,
        PeerRole::Subscriber,
        None,
    )
    .await
    .expect("m2 subscribes to m1's publication");
    let end = Instant::now() + Duration::from_secs(15);
    while subscriber.received() < 100 {
        assert!(
            Instant::now() < end,
            "{} packets through m2",
            subscriber.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(1.0));

    // Issued by another cluster: no keys.
    let refused = LivePeer::connect_from(
        &rogue.http_base,
        local,
        &subscribe_path,
        &token,
        PeerRole::Subscriber,
        None,
    )
    .await
    .expect_err("a server of another cluster cannot relay m1's publication");
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("502") && refused.contains("origin_unreachable"),
        "{refused}"
    );
    let rogue_secret = std::fs::read_to_string(rogue_dir.join("cluster-secret")).unwrap();
    let rogue_token = mint_cluster(
        &TokenSecret::parse(rogue_secret.trim()),
        &rogue.http_base,
        cascade::unix_now(),
        60,
    )
    .unwrap();
    let r = http_client()
        .post(format!("{}/relay", publisher.resource))
        .bearer_auth(rogue_token)
        .json(&serde_json::json!({ "relay_addr": "127.0.0.1:9" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "another cluster's relay token");
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(1.0));
}
