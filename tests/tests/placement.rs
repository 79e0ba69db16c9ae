//! Room placement on loopback: three servers with a static member list. Every
//! publish and subscribe of a room lands on the room's owner whichever server the
//! client asked (by redirect or proxy), an owner at capacity spills new sessions to
//! the next member, which cascades the room from it, and rooms under capacity cause
//! no server-to-server traffic at all. Servers on plain HTTP at ports other than 80,
//! with members from SRV records, find themselves among them.

use std::time::Duration;

use cascade_core::placement::member_from_url;
use cascade_core::placement::{Member, rank};
use cascade_peer::PeerRole;
use cascade_tests::media::{UdpPeer, connect_via, rtp_packet};
use cascade_tests::{
    ServerProcess, cascade_bin, free_port, metric_in, metrics_text, random_room, require,
};

const SECRET: &str = "placement-test-users";

/// Three members that know each other from `--members`, with `extra` arguments.
fn cluster(extra: &[&str]) -> Option<(Vec<ServerProcess>, Vec<Member>)> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let urls: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let members = urls.iter().map(|u| member_from_url(u).unwrap()).collect();
    let servers = urls
        .iter()
        .map(|u| {
            let mut args: Vec<String> = vec![
                "--http-listen".into(),
                u.trim_start_matches("http://").into(),
                "--token-secret".into(),
                SECRET.into(),
                "--cluster-secret".into(),
                "placement-test-cluster".into(),
                "--cluster-insecure-http".into(),
                "--members".into(),
                urls.join(","),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            ServerProcess::start(&args).expect("server starts")
        })
        .collect();
    Some((servers, members))
}

fn owner_index(room: &str, members: &[Member]) -> usize {
    let owner = rank(room, members)[0].clone();
    members.iter().position(|m| *m == owner).unwrap()
}

/// Publishes (or subscribes) through `via`, returning the peer and the server that
/// ended up serving it (from the resource URL).
async fn join(via: &ServerProcess, path: &str, token: &str, role: PeerRole) -> UdpPeer {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    connect_via(&via.http_base, socket, path, token, role)
        .await
        .unwrap_or_else(|e| panic!("{path} via {}: {e:#}", via.http_base))
}

fn served_by(peer: &UdpPeer, servers: &[ServerProcess]) -> usize {
    servers
        .iter()
        .position(|s| peer.resource.starts_with(&s.http_base))
        .unwrap_or_else(|| panic!("{} is on none of the servers", peer.resource))
}

async fn cluster_requests(server: &ServerProcess) -> f64 {
    let text = metrics_text(&server.http_base).await.unwrap();
    ["relay_open", "relay_close", "room", "proxy"]
        .iter()
        .map(|k| {
            cascade_tests::metric_required(
                &text,
                &format!("cascade_cluster_requests_total{{kind=\"{k}\"}}"),
            )
        })
        .sum()
}

async fn rooms_land_on_their_owner(handover: &str) {
    let Some((servers, members)) = cluster(&["--handover", handover]) else {
        return;
    };
    for i in 0..12 {
        let room = random_room("placed");
        let owner = owner_index(&room, &members);
        let token =
            cascade_tests::mint_token(SECRET, &room, "u", &["publish", "subscribe"], None).unwrap();
        let publisher = join(
            &servers[i % 3],
            &format!("/rtc/v1/rooms/{room}/publish"),
            &token,
            PeerRole::Publisher {
                audio_ssrc: 1,
                video_ssrc: 2,
            },
        )
        .await;
        assert_eq!(
            served_by(&publisher, &servers),
            owner,
            "publish of {room} via server {}",
            i % 3
        );
        let subscriber = join(
            &servers[(i + 1) % 3],
            &format!("/rtc/v1/rooms/{room}/subscribe"),
            &token,
            PeerRole::Subscriber,
        )
        .await;
        assert_eq!(
            served_by(&subscriber, &servers),
            owner,
            "subscribe of {room}"
        );
    }
    for s in &servers {
        let text = metrics_text(&s.http_base).await.unwrap();
        assert_eq!(metric_in(&text, "cascade_relays"), Some(0.0));
        assert_eq!(metric_in(&text, "cascade_relayed_total"), Some(0.0));
        if handover == "redirect" {
            assert_eq!(cluster_requests(s).await, 0.0, "no server-to-server call");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_land_on_their_owner_by_redirect() {
    rooms_land_on_their_owner("redirect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_land_on_their_owner_by_proxy() {
    rooms_land_on_their_owner("proxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_owner_spills_to_the_next_member_which_cascades() {
    // Capacity 4 sessions: the publisher and three subscribers fill the owner.
    let Some((servers, members)) = cluster(&["--max-sessions", "4"]) else {
        return;
    };
    let room = random_room("spill");
    let ranking: Vec<usize> = rank(&room, &members)
        .into_iter()
        .map(|m| members.iter().position(|x| x == m).unwrap())
        .collect();
    let token =
        cascade_tests::mint_token(SECRET, &room, "u", &["publish", "subscribe"], None).unwrap();
    let mut publisher = join(
        &servers[ranking[2]],
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
    )
    .await;
    assert_eq!(served_by(&publisher, &servers), ranking[0]);
    let mut subs = Vec::new();
    for i in 0..5 {
        let sub = join(
            &servers[i % 3],
            &format!("/rtc/v1/rooms/{room}/subscribe"),
            &token,
            PeerRole::Subscriber,
        )
        .await;
        let want = if i < 3 { ranking[0] } else { ranking[1] };
        assert_eq!(served_by(&sub, &servers), want, "subscriber {i}");
        subs.push(sub);
    }
    // The spill member relays the owner's publication: one relay for both.
    let owner_text = metrics_text(&servers[ranking[0]].http_base).await.unwrap();
    assert_eq!(metric_in(&owner_text, "cascade_relays"), Some(1.0));
    let spill_text = metrics_text(&servers[ranking[1]].http_base).await.unwrap();
    assert_eq!(
        metric_in(&spill_text, "cascade_handovers_total{reason=\"capacity\"}"),
        Some(0.0),
        "the spill member took them"
    );
    let owner_handovers =
        metric_in(&owner_text, "cascade_handovers_total{reason=\"capacity\"}").unwrap();
    assert!(owner_handovers >= 1.0, "the owner sent them on");

    // Media reaches the spilled subscribers through the cascade.
    let readers: Vec<_> = subs
        .drain(3..)
        .map(|mut p| {
            std::thread::spawn(move || {
                let mut got = 0;
                let mut buf = [0u8; 2048];
                p.socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let end = std::time::Instant::now() + Duration::from_secs(6);
                while got < 100 && std::time::Instant::now() < end {
                    if let Ok((n, _)) = p.socket.recv_from(&mut buf)
                        && (128..192).contains(&buf[0])
                        && !(192..224).contains(&buf[1])
                        && p.rx.unprotect_rtp(&mut buf[..n]).is_ok()
                    {
                        got += 1;
                    }
                }
                got
            })
        })
        .collect();
    for seq in 1..=300u16 {
        publisher
            .send_rtp(&rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 800))
            .unwrap();
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for r in readers {
        let got = r.join().unwrap();
        assert!(got >= 100, "a spilled subscriber got {got} packets");
    }
}

/// Three servers on plain HTTP at ports other than 80, whose members come from the
/// SRV records a `cascade dns` on loopback serves: member URLs are built with the
/// scheme of the servers' own API (`http://127.0.0.1:PORT`), so each finds itself
/// among the members and rooms land on their owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_members_on_plain_http_ports_find_themselves() {
    use cascade_tests::dc::{DnsProcess, ZoneFile};
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    const ZONE: &str = "plain.cascade.test";
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut zone = format!("zone = \"{ZONE}\"\nttl = 1\nanswers = 3\n");
    for (i, port) in ports.iter().enumerate() {
        zone.push_str(&format!(
            "\n[[server]]\nname = \"m{n}\"\naddress = \"127.0.0.1\"\nregion = \"dc\"\n\
             port = {port}\nhealth_url = \"http://127.0.0.1:{port}/healthz\"\n",
            n = i + 1
        ));
    }
    let zone = ZoneFile::new(&zone).expect("a zone file");
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let dns = DnsProcess::launch(
        std::process::Command::new(cascade_bin()),
        zone.path(),
        any,
        any,
        Duration::from_millis(200),
        "",
    )
    .expect("cascade dns starts");
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let servers: Vec<ServerProcess> = ports
        .iter()
        .map(|p| {
            ServerProcess::start(&[
                "--http-listen",
                &format!("127.0.0.1:{p}"),
                "--token-secret",
                SECRET,
                "--members-srv",
                &format!("_cascade._tcp.{ZONE}"),
                "--members-dns",
                &dns.dns.to_string(),
            ])
            .expect("server starts")
        })
        .collect();
    let start = std::time::Instant::now();
    loop {
        let mut listed = Vec::new();
        for s in &servers {
            let text = metrics_text(&s.http_base).await.expect("metrics");
            listed.push(metric_in(&text, "cascade_placement_self_member"));
        }
        if listed.iter().all(|v| *v == Some(1.0)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "servers on plain HTTP do not find themselves among their SRV members: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // As SRV names them: the hash is over `target:port`.
    let members: Vec<Member> = ports
        .iter()
        .zip(&urls)
        .enumerate()
        .map(|(i, (p, u))| Member::new(format!("m{}.{ZONE}:{p}", i + 1), u.clone()))
        .collect();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    for k in 0..12 {
        let room = format!("plain-{k}");
        let owner = owner_index(&room, &members);
        let token = servers[0].token(&room, "u", &["publish"]).unwrap();
        for (via, s) in servers.iter().enumerate() {
            let resp = client
                .post(s.url(&format!("/rtc/v1/rooms/{room}/publish")))
                .bearer_auth(&token)
                .header("content-type", "application/sdp")
                .body("not an offer")
                .send()
                .await
                .expect("publish");
            let placed = match resp.status().as_u16() {
                // Served here: the offer is read (and refused).
                400 => urls[via].clone(),
                307 => resp.headers()["location"].to_str().unwrap().to_owned(),
                other => panic!("{other} from m{}", via + 1),
            };
            assert!(
                placed.starts_with(&urls[owner]),
                "{room} via m{} went to {placed}, not to its owner {}",
                via + 1,
                urls[owner]
            );
        }
    }
}
