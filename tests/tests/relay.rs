//! The origin half of a cascade: an authenticated server-to-server relay call makes
//! the origin copy a publisher's packets, unchanged, to the caller's media address,
//! and hands it the keys to read them.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use cascade::unix_now;
use cascade_core::token::{TokenSecret, mint_cluster};
use cascade_dataplane::srtp::{SrtpContext, SrtpKeyingMaterial, SrtpProfile};
use cascade_peer::PeerRole;
use cascade_tests::media::{connect, rtp_packet};
use cascade_tests::{ServerProcess, cascade_bin, http_client, metric, random_room, require};
use serde_json::{Value, json};

const CLUSTER: &str = "cluster-test-key";

fn server(extra: &[&str]) -> Option<ServerProcess> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let mut args: Vec<String> = vec!["--cluster-secret".into(), CLUSTER.into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Ok(d) = std::env::var("CASCADE_DATAPLANE")
        && !d.is_empty()
    {
        args.extend(["--dataplane".into(), d]);
    }
    Some(ServerProcess::start(&args).expect("server starts"))
}

fn cluster_token(secret: &str) -> String {
    mint_cluster(&TokenSecret::parse(secret), "edge-test", unix_now(), 60).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_copies_the_publishers_packets_unchanged() {
    let Some(server) = server(&["--cluster-insecure-http"]) else {
        return;
    };
    let room = random_room("relay");
    let token = server.token(&room, "alice", &["publish"]).unwrap();
    let mut publisher = connect(
        &server,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x51,
            video_ssrc: 0x52,
        },
    )
    .await
    .expect("publisher connects");
    let edge = UdpSocket::bind("127.0.0.1:0").unwrap();
    edge.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let relay_url = format!("{}/relay", publisher.resource);

    // Refused: no token, a user token, a token signed with another key.
    for bad in [None, Some(token.clone()), Some(cluster_token("other"))] {
        let mut req = http_client()
            .post(&relay_url)
            .json(&json!({"relay_addr": edge.local_addr().unwrap()}));
        if let Some(t) = bad {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }

    let resp = http_client()
        .post(&relay_url)
        .bearer_auth(cluster_token(CLUSTER))
        .json(&json!({"relay_addr": edge.local_addr().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let answer: Value = resp.json().await.unwrap();
    let tracks = answer["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2);
    assert_eq!(answer["origin_media"], server.media_addr.to_string());
    let profile =
        SrtpProfile::from_openssl_name(answer["srtp"]["profile"].as_str().unwrap()).unwrap();
    let key = hex_decode(answer["srtp"]["key"].as_str().unwrap());
    let salt = hex_decode(answer["srtp"]["salt"].as_str().unwrap());
    let mut edge_rx =
        SrtpContext::new(&SrtpKeyingMaterial::new(profile, &key, &salt).unwrap()).unwrap();
    assert_eq!(metric(&server.http_base, "cascade_relays").await, Some(1.0));

    // The edge reads while the publisher sends, as a server would.
    let origin = server.media_addr;
    let edge_thread = edge.try_clone().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut got = 0u16;
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < 100 && Instant::now() < deadline {
            let Ok((n, from)) = edge_thread.recv_from(&mut buf) else {
                continue;
            };
            assert_eq!(from, origin, "relayed from the origin's media port");
            let len = edge_rx
                .unprotect_rtp(&mut buf[..n])
                .expect("publisher's keys read it");
            let h = cascade_dataplane::rtp::parse(&buf[..len]).unwrap();
            assert_eq!(h.ssrc, 0x52, "the publisher's own SSRC, unchanged");
            assert_eq!(h.sequence, got);
            got += 1;
        }
        got
    });
    for seq in 0..100u16 {
        let pkt = rtp_packet(0x52, seq, u32::from(seq) * 3000, 96, 900);
        publisher.send_rtp(&pkt).unwrap();
        if seq % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let got = receiver.join().unwrap();
    let mut buf = [0u8; 2048];
    assert_eq!(got, 100);
    let relayed = metric(&server.http_base, "cascade_relayed_total")
        .await
        .unwrap_or(0.0);
    assert!(relayed >= 100.0, "{relayed}");

    // Closing the relay stops the copies.
    let relay = answer["relay"].as_str().unwrap();
    let status = http_client()
        .delete(relay)
        .bearer_auth(cluster_token(CLUSTER))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for seq in 100..110u16 {
        publisher
            .send_rtp(&rtp_packet(0x52, seq, 0, 96, 100))
            .unwrap();
    }
    assert!(
        edge.recv_from(&mut buf).is_err(),
        "nothing after the relay closed"
    );
    assert_eq!(metric(&server.http_base, "cascade_relays").await, Some(0.0));
}

#[tokio::test]
async fn relay_refuses_to_send_keys_in_clear_unless_told() {
    let Some(server) = server(&[]) else { return };
    let resp = http_client()
        .post(server.url("/rtc/v1/resources/whatever/relay"))
        .bearer_auth(cluster_token(CLUSTER))
        .json(&json!({"relay_addr": "127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "relay_needs_tls");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
