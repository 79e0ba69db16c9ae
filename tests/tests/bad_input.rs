//! Bad input against a real server: refused tokens, malformed and unsupported SDP, and
//! 10,000 random datagrams sprayed at the media port while a session forwards media.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use cascade::unix_now;
use cascade_core::token::{Claims, Grant, TokenSecret, mint};
use cascade_peer::PeerRole;
use cascade_tests::media::{UdpPeer, connect, rtp_packet};
use cascade_tests::{ServerProcess, cascade_bin, http_client, metric, random_room, require};
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn server() -> Option<ServerProcess> {
    server_with(&[])
}

fn server_with(extra: &[&str]) -> Option<ServerProcess> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if let Ok(d) = std::env::var("CASCADE_DATAPLANE")
        && !d.is_empty()
    {
        args.extend(["--dataplane".into(), d]);
    }
    Some(ServerProcess::start(&args).expect("server starts"))
}

async fn post_offer(
    server: &ServerProcess,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut req = http_client()
        .post(server.url(path))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.text().await.unwrap_or_default();
    if status >= 400 {
        assert!(ct.starts_with("application/json"), "{status}: {ct}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON error body");
        return (status, v["code"].as_str().unwrap_or_default().to_owned());
    }
    (status, body)
}

fn valid_offer() -> String {
    cascade_peer::ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1,
            video_ssrc: 2,
        },
        &[],
    )
    .unwrap()
    .offer()
}

#[tokio::test]
async fn tokens_are_checked() {
    let Some(server) = server() else { return };
    let room = random_room("tok");
    let path = format!("/rtc/v1/rooms/{room}/publish");
    let offer = valid_offer();
    let now = unix_now();
    let claims = |room: &str, grants: Vec<Grant>, exp: u64| Claims {
        sub: "mallory".into(),
        room: room.into(),
        grants,
        exp,
        iat: now,
    };
    let ours = TokenSecret::parse(&server.secret);
    let forged = mint(
        &TokenSecret::parse("not-the-secret"),
        &claims(&room, vec![Grant::Publish], now + 600),
    )
    .unwrap();
    let expired = mint(&ours, &claims(&room, vec![Grant::Publish], now - 10)).unwrap();
    let wrong_room = mint(&ours, &claims("elsewhere", vec![Grant::Publish], now + 600)).unwrap();
    let no_grant = mint(&ours, &claims(&room, vec![Grant::Subscribe], now + 600)).unwrap();
    let cases: [(Option<&str>, u16, &str); 6] = [
        (None, 401, "token_missing"),
        (Some("garbage"), 401, "token_malformed"),
        (Some(&forged), 401, "token_bad_signature"),
        (Some(&expired), 401, "token_expired"),
        (Some(&wrong_room), 403, "token_wrong_room"),
        (Some(&no_grant), 403, "token_missing_grant"),
    ];
    for (token, status, code) in cases {
        let got = post_offer(&server, &path, token, "application/sdp", &offer).await;
        assert_eq!(got, (status, code.to_owned()), "token case {code}");
    }
    assert_eq!(
        metric(&server.http_base, "cascade_sessions").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn bad_sdp_is_refused_with_a_reason() {
    let Some(server) = server() else { return };
    let room = random_room("sdp");
    let token = server.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let path = format!("/rtc/v1/rooms/{room}/publish");
    let good = valid_offer();
    let no_codec = good
        .replace("opus/48000/2", "PCMU/8000")
        .replace("VP8/90000", "H263/90000");
    let cases = [
        (
            "application/sdp",
            "v=0\r\nthis is not sdp".to_owned(),
            400,
            "bad_sdp",
        ),
        (
            "application/sdp",
            good.replace("a=ice-ufrag", "a=x"),
            400,
            "bad_sdp",
        ),
        (
            "application/sdp",
            good[..good.len() / 2].to_owned(),
            400,
            "bad_sdp",
        ),
        ("application/sdp", no_codec, 400, "no_common_codec"),
        ("text/plain", good.clone(), 415, "unsupported_media_type"),
    ];
    for (ct, body, status, code) in cases {
        let got = post_offer(&server, &path, Some(&token), ct, &body).await;
        assert_eq!(got, (status, code.to_owned()), "{code}");
    }
    // Subscribing to an unknown resource.
    let sub = format!(
        "/rtc/v1/rooms/{room}/subscribe?resource={}",
        server.url("/rtc/v1/resources/nope")
    );
    let got = post_offer(&server, &sub, Some(&token), "application/sdp", &good).await;
    assert_eq!(got, (404, "unknown_resource".to_owned()));
    assert_eq!(
        metric(&server.http_base, "cascade_sessions").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_do_not_disturb_a_running_session() {
    let Some(server) = server() else { return };
    spray_during_session(&server).await;
    // In userspace, the data plane itself dropped and counted the spray: about 3,600
    // of the 10,000 fall in the RTP/RTCP or unknown ranges (the rest look like STUN or
    // DTLS and go to control, which ignores them).
    let text = cascade_tests::metrics_text(&server.http_base)
        .await
        .expect("metrics");
    let drops = cascade_tests::metric_required(&text, "cascade_drops_total");
    assert!(
        drops >= 3_000.0,
        "the spray was dropped and counted: {drops}"
    );
}

/// The same spray with the eBPF fast path attached to loopback: the XDP guard drops
/// what never passed ICE before it reaches the socket.
#[test]
fn xdp_guard_drops_a_spray_while_a_session_runs() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let usable = cascade_ebpf::programs_embedded() && root;
    if !require(usable, "eBPF programs and root for the XDP guard") {
        return;
    }
    if !cascade_tests::netns::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    // Its own namespace, so the guard has a loopback interface to itself.
    let ns = cascade_tests::netns::Netns::new("xdp").expect("namespace");
    let mut args = vec!["--ebpf".to_owned(), "on".to_owned()];
    if let Ok(d) = std::env::var("CASCADE_DATAPLANE")
        && !d.is_empty()
    {
        args.extend(["--dataplane".into(), d]);
    }
    let server = ns.spawn_server(&args).expect("server starts");
    let text = ns.block_on(|| async {
        spray_during_session(&server).await;
        cascade_tests::metrics_text(&server.http_base)
            .await
            .unwrap()
    });
    let xdp = |c: &str| {
        cascade_tests::metric_required(&text, &format!("cascade_ebpf_packets{{counter=\"{c}\"}}"))
    };
    let in_kernel = xdp("guard_media_unknown_source")
        + xdp("guard_dtls_unknown_source")
        + xdp("guard_garbage")
        + xdp("guard_truncated")
        + xdp("guard_stun_over_budget");
    eprintln!(
        "XDP guard: dropped {in_kernel} of the spray in the kernel, passed {} media packets",
        xdp("guard_media_allowed")
    );
    assert!(
        in_kernel >= 5_000.0,
        "XDP dropped the spray: {in_kernel}\n{text}"
    );
    assert!(
        xdp("guard_media_allowed") >= 1_000.0,
        "the session's media passed the guard\n{text}"
    );
    let unknown =
        cascade_tests::metric_required(&text, "cascade_drops_total{reason=\"unknown_source\"}");
    assert_eq!(
        unknown, 0.0,
        "nothing from unknown sources reached userspace"
    );
}

/// The sequence number of `datagram` when it is a video packet (payload type 96) the
/// subscriber can decrypt.
fn video_sequence(subscriber: &mut UdpPeer, datagram: &mut [u8]) -> Option<u16> {
    let (&first, rest) = datagram.split_first()?;
    if !(128..192).contains(&first) || rest.first().is_some_and(|b| (192..224).contains(b)) {
        return None; // STUN/DTLS/RTCP
    }
    let len = subscriber.rx.unprotect_rtp(datagram).ok()?;
    let h = cascade_dataplane::rtp::parse(&datagram[..len]).ok()?;
    (h.payload_type == 96).then_some(h.sequence)
}

/// Sends video probes (sequence numbers 0, 1, ...) every 20 ms until the subscriber
/// decrypts one, drains what follows, and returns the next sequence number to send.
/// Panics after 5 s.
async fn probe_until_forwarded(publisher: &mut UdpPeer, subscriber: &mut UdpPeer) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    subscriber
        .socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut seq = 0u16;
    loop {
        assert!(
            Instant::now() < deadline,
            "no video reached the subscriber in 5 s"
        );
        let pkt = rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 1000);
        publisher.send_rtp(&pkt).unwrap();
        seq += 1;
        let mut forwarded = false;
        while let Ok((n, _)) = subscriber.socket.recv_from(&mut buf) {
            forwarded |= video_sequence(subscriber, &mut buf[..n]).is_some();
        }
        if forwarded {
            return seq;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects a publisher and a subscriber, sprays 10,000 random datagrams from a third
/// socket while 1,000 video packets flow, and checks that every packet arrived, that
/// the server did not log per packet and that it still serves both sessions.
async fn spray_during_session(server: &ServerProcess) {
    let room = random_room("spray");
    let token = server.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let mut publisher = connect(
        server,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
    )
    .await
    .expect("publisher connects");
    let mut subscriber = connect(
        server,
        &format!("/rtc/v1/rooms/{room}/subscribe"),
        &token,
        PeerRole::Subscriber,
    )
    .await
    .expect("subscriber connects");
    // Media flows once the route reached the workers: send video until the
    // subscriber decrypts a packet; the counted packets follow the last probe.
    let first = probe_until_forwarded(&mut publisher, &mut subscriber).await;
    let log_lines_before = server.stderr_line_count();

    // The spray: 10,000 random datagrams from another socket, with first bytes in
    // every RFC 7983 range so each demux path sees garbage.
    let media = server.media_addr;
    let spray = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7983);
        for i in 0..10_000u32 {
            let len = rng.random_range(1..1400);
            let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            d[0] = match i % 5 {
                0 => rng.random_range(0..4),
                1 => rng.random_range(20..64),
                2 => rng.random_range(128..192),
                _ => d[0],
            };
            let _ = sock.send_to(&d, media);
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });

    // Meanwhile the publisher sends 1,000 video packets, paced, and the subscriber
    // counts what it can decrypt.
    let sent = 1_000u16;
    let receiver = std::thread::spawn(move || {
        let mut got = std::collections::BTreeSet::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        subscriber
            .socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while Instant::now() < deadline && got.len() < usize::from(sent) {
            let Ok((n, _)) = subscriber.socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(seq) = video_sequence(&mut subscriber, &mut buf[..n])
                && seq.wrapping_sub(first) < sent
            {
                got.insert(seq);
            }
        }
        got.len()
    });
    for seq in (0..sent).map(|i| first.wrapping_add(i)) {
        let pkt = rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 1000);
        publisher.send_rtp(&pkt).unwrap();
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    spray.join().unwrap();
    let received = receiver.join().unwrap();
    assert_eq!(
        received,
        usize::from(sent),
        "every packet reached the subscriber"
    );

    let new_lines = server.stderr_line_count() - log_lines_before;
    assert!(
        new_lines < 50,
        "{new_lines} log lines during the spray:\n{}",
        server.stderr_tail()
    );
    // The server still answers and still has both sessions.
    assert_eq!(
        metric(&server.http_base, "cascade_sessions").await,
        Some(2.0)
    );
    for r in [&publisher.resource] {
        let s = http_client()
            .delete(r)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200);
    }
}

/// The spray above comes from a stranger, so the data plane drops it before any
/// RTP/RTCP parser sees it. Here the garbage comes from the session's own peers,
/// protected with their SRTP keys, so it authenticates and reaches the parsers:
/// 10,000 datagrams of random RTP headers (extensions, CSRCs, padding, unknown
/// SSRCs and payload types) and random RTCP compounds (every packet type, random
/// counts, lengths, NACK bitmaps, transport feedback) from the publisher and the
/// subscriber, while 1,000 video packets flow. Every video packet must arrive, the
/// garbage must have been parsed (counted as `no_route` or `malformed`, none as
/// `auth_failed`), and the server must keep both sessions and stay quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_garbage_from_the_sessions_peers_reaches_the_parsers_harmlessly() {
    let Some(server) = server() else { return };
    let room = random_room("garbage");
    let token = server.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let mut publisher = connect(
        &server,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
    )
    .await
    .expect("publisher connects");
    let mut subscriber = connect(
        &server,
        &format!("/rtc/v1/rooms/{room}/subscribe"),
        &token,
        PeerRole::Subscriber,
    )
    .await
    .expect("subscriber connects");
    let text = cascade_tests::metrics_text(&server.http_base)
        .await
        .unwrap();
    let drops = |text: &str, reason: &str| {
        cascade_tests::metric_in(text, &format!("cascade_drops_total{{reason=\"{reason}\"}}"))
            .unwrap_or_else(|| panic!("the server exports drops for {reason}"))
    };
    let before: Vec<f64> = ["no_route", "malformed", "auth_failed"]
        .iter()
        .map(|r| drops(&text, r))
        .collect();
    let log_lines_before = server.stderr_line_count();

    // The garbage, protected by each peer: a third of it RTP from the publisher, a
    // third RTCP from the publisher, a third RTCP from the subscriber. Half of the
    // feedback names a stream the subscriber really receives (its answer's SSRCs),
    // so NACKs, keyframe requests and estimator feedback act on live state.
    let streams: Vec<u32> = subscriber
        .answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=ssrc:"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!streams.is_empty(), "the answer names its streams");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3711);
    let mut garbage: Vec<(bool, Vec<u8>)> = Vec::new();
    for _ in 0..100_000 {
        if garbage.len() == 10_000 {
            break;
        }
        let from_publisher = garbage.len() % 3 != 2;
        let ctx = if from_publisher {
            &mut publisher.tx
        } else {
            &mut subscriber.tx
        };
        let rtp = garbage.len().is_multiple_of(3);
        let plain = if rtp {
            random_rtp(&mut rng)
        } else {
            random_rtcp(
                &mut rng,
                if from_publisher { 0x2222 } else { 0x7777 },
                &streams,
            )
        };
        let mut buf = vec![0u8; plain.len() + 32];
        buf[..plain.len()].copy_from_slice(&plain);
        let protected = if rtp {
            ctx.protect_rtp(&mut buf, plain.len())
        } else {
            ctx.protect_rtcp(&mut buf, plain.len())
        };
        // Headers the SRTP transform itself refuses never leave a real peer either.
        if let Ok(n) = protected {
            buf.truncate(n);
            garbage.push((from_publisher, buf));
        }
    }
    assert_eq!(garbage.len(), 10_000, "the peers protected the garbage");
    let (pub_socket, sub_socket) = (
        publisher.socket.try_clone().unwrap(),
        subscriber.socket.try_clone().unwrap(),
    );
    let media = server.media_addr;
    let sender = std::thread::spawn(move || {
        for (i, (from_publisher, d)) in garbage.iter().enumerate() {
            let socket = if *from_publisher {
                &pub_socket
            } else {
                &sub_socket
            };
            let _ = socket.send_to(d, media);
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });

    // Meanwhile 1,000 video packets, counted by the subscriber.
    let sent = 1_000u16;
    let receiver = std::thread::spawn(move || {
        let mut got = std::collections::BTreeSet::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        subscriber
            .socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while Instant::now() < deadline && got.len() < usize::from(sent) {
            let Ok((n, _)) = subscriber.socket.recv_from(&mut buf) else {
                continue;
            };
            if !(128..192).contains(&buf[0]) || (192..224).contains(&buf[1]) {
                continue;
            }
            if let Ok(len) = subscriber.rx.unprotect_rtp(&mut buf[..n])
                && let Ok(h) = cascade_dataplane::rtp::parse(&buf[..len])
                && h.payload_type == 96
            {
                got.insert(h.sequence);
            }
        }
        got.len()
    });
    for seq in 0..sent {
        let pkt = rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 1000);
        publisher.send_rtp(&pkt).unwrap();
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    sender.join().unwrap();
    let received = receiver.join().unwrap();
    assert_eq!(
        received,
        usize::from(sent),
        "every video packet reached the subscriber"
    );

    let text = cascade_tests::metrics_text(&server.http_base)
        .await
        .unwrap();
    let after: Vec<f64> = ["no_route", "malformed", "auth_failed"]
        .iter()
        .map(|r| drops(&text, r))
        .collect();
    eprintln!("drops no_route/malformed/auth_failed: {before:?} -> {after:?}");
    assert!(
        (after[0] - before[0]) + (after[1] - before[1]) >= 1_000.0,
        "the garbage authenticated and was parsed: {before:?} -> {after:?}"
    );
    assert_eq!(after[2], before[2], "every garbage datagram authenticated");
    let new_lines = server.stderr_line_count() - log_lines_before;
    assert!(
        new_lines < 50,
        "{new_lines} log lines during the garbage:\n{}",
        server.stderr_tail()
    );
    assert_eq!(
        cascade_tests::metric_in(&text, "cascade_sessions"),
        Some(2.0),
        "both sessions stay"
    );
}

/// A random RTP packet: version 2, random marker, payload type (never an RTCP
/// type), sequence number, timestamp and SSRC (one of 64, never the session's own),
/// sometimes
/// CSRCs, a header extension of a random length, padding.
fn random_rtp(rng: &mut impl Rng) -> Vec<u8> {
    let cc: u8 = if rng.random_bool(0.3) {
        rng.random_range(0..16)
    } else {
        0
    };
    let ext = rng.random_bool(0.5);
    let pad = rng.random_bool(0.2);
    let mut pt: u8 = rng.random_range(0..128);
    if (64..96).contains(&pt) {
        pt -= 32; // 192..224 with the marker is RTCP
    }
    let mut p = vec![
        0x80 | (u8::from(pad) << 5) | (u8::from(ext) << 4) | cc,
        (u8::from(rng.random_bool(0.5)) << 7) | pt,
    ];
    p.extend_from_slice(&rng.random::<[u8; 6]>());
    // 64 made-up streams (an SRTP context keeps state for at most 256).
    let ssrc = 0x5eed_0000 + rng.random_range(0..64u32);
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..cc {
        p.extend_from_slice(&rng.random::<[u8; 4]>());
    }
    if ext {
        let profile: u16 = match rng.random_range(0..3) {
            0 => 0xbede,
            1 => 0x1000,
            _ => rng.random(),
        };
        let words: u16 = rng.random_range(0..8);
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&words.to_be_bytes());
        for _ in 0..usize::from(words) * 4 {
            p.push(rng.random());
        }
    }
    let payload = rng.random_range(0..1000);
    p.extend((0..payload).map(|_| rng.random::<u8>()));
    if pad {
        let n = rng.random_range(1..=255u8);
        p.extend(std::iter::repeat_n(0, usize::from(n) - 1));
        p.push(n);
    }
    p
}

/// A random RTCP compound of one to six packets from sender `ssrc`: every packet
/// type (SR, RR, SDES, BYE, APP, NACK, transport feedback, PLI, FIR, REMB, XR and
/// others), random counts and bodies, usually a length that fits the packet;
/// feedback names one of `streams` half the time.
fn random_rtcp(rng: &mut impl Rng, ssrc: u32, streams: &[u32]) -> Vec<u8> {
    let mut p = Vec::new();
    for i in 0..rng.random_range(1..=6) {
        let pt: u8 = match rng.random_range(0..10) {
            0..=7 => rng.random_range(200..=207),
            _ => rng.random_range(192..=223),
        };
        let count: u8 = match pt {
            205 => [1, 15, rng.random_range(0..32)][rng.random_range(0..3)],
            206 => [1, 4, 15, rng.random_range(0..32)][rng.random_range(0..4)],
            _ => rng.random_range(0..32),
        };
        let words: u16 = rng.random_range(2..40);
        let mut body: Vec<u8> = (0..usize::from(words) * 4).map(|_| rng.random()).collect();
        if i == 0 {
            body[..4].copy_from_slice(&ssrc.to_be_bytes());
        }
        if (205..=206).contains(&pt) && rng.random_bool(0.5) {
            let media = streams[rng.random_range(0..streams.len())];
            body[4..8].copy_from_slice(&media.to_be_bytes());
        }
        let length = if rng.random_bool(0.9) {
            words
        } else {
            rng.random()
        };
        p.push(0x80 | count);
        p.push(pt);
        p.extend_from_slice(&length.to_be_bytes());
        p.extend_from_slice(&body);
    }
    p
}
