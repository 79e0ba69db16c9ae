//! The HTTP API over HTTP/3 against a real `cascade serve` with a TLS certificate: a
//! quinn + h3 client that trusts only the test CA publishes and subscribes (201,
//! SDP answer, Location, media flowing), gets the same JSON errors as over TCP,
//! follows an event stream and deletes its resources; the TCP side advertises
//! HTTP/3 with `Alt-Svc`; per-address caps see the QUIC client's address; every
//! client is sent through Retry when the server asks for address validation; no
//! 0-RTT is offered; idle connections are closed and do not hold up a stop; the TCP
//! side negotiates HTTP/2 and HTTP/1.1 by ALPN.
//! Headless Chromium, forced to QUIC for the server's origin and trusting its key by
//! SPKI pin, loads the demo page, publishes and subscribes over HTTP/3 only. An
//! edge opens its first relay from an origin over TCP, learns the origin's
//! `Alt-Svc`, and opens the next one over HTTP/3.

use std::net::SocketAddr;
use std::time::Duration;

use cascade_peer::{ClientPeer, PeerRole};
use cascade_tests::h3client::{H3Client, next_chunk};
use cascade_tests::media::{UdpPeer, complete_connect, rtp_packet};
use cascade_tests::tls::{CertDir, TestCa, tls_args};
use cascade_tests::{
    ServerProcess, browser_dir, browser_node_modules_available, cascade_bin, chromium_available,
    chromium_path, command_available, http_client, metric, random_room, require, wait_for_metric,
};

/// A server with a certificate for 127.0.0.1 issued by a fresh CA, and that CA.
fn tls_server(extra: &[&str]) -> Option<(ServerProcess, CertDir, std::path::PathBuf)> {
    tls_server_with_cert(extra).map(|(server, dir, ca, _)| (server, dir, ca))
}

/// [`tls_server`], also giving the server's certificate (PEM).
fn tls_server_with_cert(
    extra: &[&str],
) -> Option<(
    ServerProcess,
    CertDir,
    std::path::PathBuf,
    std::path::PathBuf,
)> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let dir = CertDir::new("h3").unwrap();
    let ca = TestCa::new(&dir, "ca").unwrap();
    let cert = ca.issue(&dir, "m1", "127.0.0.1".parse().unwrap()).unwrap();
    let mut args = tls_args(&cert);
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = ServerProcess::start(&args).expect("server starts");
    let ca_pem = ca.pem.clone();
    Some((server, dir, ca_pem, cert.cert))
}

fn http_addr(server: &ServerProcess) -> SocketAddr {
    let host = server.http_base.strip_prefix("https://").expect("https");
    host.parse().expect("http_base is ip:port")
}

/// The path of a resource URL (`Location` holds the server's public URL).
fn path_of(server: &ServerProcess, url: &str) -> String {
    url.strip_prefix(&server.http_base)
        .unwrap_or(url)
        .to_owned()
}

/// POSTs `peer`'s offer over HTTP/3 and runs ICE and DTLS with the answer.
async fn connect_h3(
    client: &mut H3Client,
    path: &str,
    token: &str,
    role: PeerRole,
) -> anyhow::Result<UdpPeer> {
    let mut peer = ClientPeer::new(role, &[])?;
    let auth = format!("Bearer {token}");
    let resp = client
        .request(
            "POST",
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/sdp"),
            ],
            Some(peer.offer().into_bytes()),
        )
        .await?;
    anyhow::ensure!(
        resp.status == 201,
        "{path}: {} {}",
        resp.status,
        resp.text()
    );
    assert_eq!(resp.header("content-type"), Some("application/sdp"));
    let location = resp
        .header("location")
        .expect("201 with Location")
        .to_owned();
    let answer = resp.text();
    assert!(answer.starts_with("v=0"), "not an SDP answer: {answer}");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    complete_connect(&mut peer, socket, path, answer, location)
}

#[tokio::test]
async fn publish_and_subscribe_over_http3() {
    let Some((server, _dir, ca)) = tls_server(&[]) else {
        return;
    };
    let addr = http_addr(&server);

    // TCP responses advertise HTTP/3 on the same port.
    let resp = http_client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("alt-svc").and_then(|v| v.to_str().ok()),
        Some(format!("h3=\":{}\"; ma=86400", addr.port()).as_str())
    );

    let mut client = H3Client::connect(addr, &ca).await.expect("QUIC handshake");
    let health = client.request("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    // The same JSON errors as over TCP.
    let room = random_room("h3");
    let publish = format!("/rtc/v1/rooms/{room}/publish");
    let offer = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1,
            video_ssrc: 2,
        },
        &[],
    )
    .unwrap()
    .offer();
    let sdp = [("content-type", "application/sdp")];
    let over_h3 = client
        .request("POST", &publish, &sdp, Some(offer.clone().into_bytes()))
        .await
        .unwrap();
    let over_tcp = http_client()
        .post(server.url(&publish))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(over_h3.status, 401);
    assert_eq!(over_tcp.status(), 401);
    let tcp_json: serde_json::Value = over_tcp.json().await.unwrap();
    assert_eq!(over_h3.json().unwrap(), tcp_json);
    assert_eq!(tcp_json["code"], "token_missing");

    // The router's body cap applies over HTTP/3 too.
    let room_token = format!("Bearer {}", server.token(&room, "u", &["publish"]).unwrap());
    let big = client
        .request(
            "POST",
            &publish,
            &[sdp[0], ("authorization", &room_token)],
            Some(vec![b'a'; 100_000]),
        )
        .await
        .unwrap();
    assert_eq!(big.status, 413, "{}", big.text());
    assert_eq!(big.json().unwrap()["code"], "bad_body");

    let missing = "/rtc/v1/resources/no-such-resource";
    let over_h3 = client.request("GET", missing, &[], None).await.unwrap();
    let over_tcp = http_client().get(server.url(missing)).send().await.unwrap();
    assert_eq!((over_h3.status, over_tcp.status().as_u16()), (404, 404));
    let tcp_json: serde_json::Value = over_tcp.json().await.unwrap();
    assert_eq!(over_h3.json().unwrap(), tcp_json);
    assert_eq!(tcp_json["code"], "unknown_resource");

    // Publish and subscribe; media flows from one to the other.
    let token = server.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let mut publisher = connect_h3(
        &mut client,
        &publish,
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
    )
    .await
    .expect("publish over HTTP/3");
    let subscriber = connect_h3(
        &mut client,
        &format!("/rtc/v1/rooms/{room}/subscribe"),
        &token,
        PeerRole::Subscriber,
    )
    .await
    .expect("subscribe over HTTP/3");

    // An event stream over HTTP/3 delivers the resource's current state at once.
    let publisher_path = path_of(&server, &publisher.resource);
    let auth = format!("Bearer {token}");
    let (resp, mut events) = client
        .open(
            "GET",
            &format!("{publisher_path}/events"),
            &[("authorization", &auth)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let first = tokio::time::timeout(Duration::from_secs(5), next_chunk(&mut events))
        .await
        .expect("an event within 5 s")
        .unwrap();
    assert!(first.contains("event: state"), "{first}");

    subscriber
        .socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..200u16 {
        publisher
            .send_rtp(&rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 400))
            .unwrap();
        if subscriber.socket.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        if got >= 5 {
            break;
        }
    }
    assert!(got >= 5, "the subscriber received {got} packets");

    for peer in [&publisher, &subscriber] {
        let path = path_of(&server, &peer.resource);
        let resp = client
            .request("DELETE", &path, &[("authorization", &auth)], None)
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "DELETE {path}: {}", resp.text());
    }
    client.close().await;
}

/// `--http3 on` without a certificate: the server makes a development certificate,
/// says where it wrote it and its SPKI hash, and serves HTTPS and HTTP/3 with it; a
/// client that trusts that file alone publishes over HTTP/3.
#[tokio::test]
async fn http3_without_a_certificate_uses_a_development_one() {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let server = ServerProcess::start(&["--http3", "on"]).expect("server starts");
    assert!(
        server.http_base.starts_with("https://"),
        "{}",
        server.http_base
    );
    let lines = server.stdout_lines();
    let after = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no `{prefix}` line in {lines:?}"))
            .to_owned()
    };
    let cert = std::path::PathBuf::from(after("dev certificate: "));
    let spki = after("dev certificate SPKI sha256: ");
    assert_eq!(
        cascade_tests::tls::spki_sha256_base64(&cert).unwrap(),
        spki,
        "the printed hash is the written certificate's"
    );
    let addr = http_addr(&server);

    // HTTPS over TCP, trusting that certificate only, advertises HTTP/3.
    let pem = std::fs::read(&cert).unwrap();
    let tcp = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = tcp.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("alt-svc").and_then(|v| v.to_str().ok()),
        Some(format!("h3=\":{}\"; ma=86400", addr.port()).as_str())
    );

    // HTTP/3 with the same trust: a publish is answered.
    let mut client = H3Client::connect(addr, &cert)
        .await
        .expect("QUIC handshake");
    let room = random_room("h3dev");
    let token = server.token(&room, "u", &["publish"]).unwrap();
    let publisher = connect_h3(
        &mut client,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x31,
            video_ssrc: 0x32,
        },
    )
    .await
    .expect("publish over HTTP/3 with the development certificate");
    assert!(
        publisher.resource.starts_with("https://"),
        "{}",
        publisher.resource
    );
    client.close().await;
}

/// The TCP side offers HTTP/2 by ALPN (as the HTTPS records say) and HTTP/1.1.
#[tokio::test]
async fn the_tcp_side_negotiates_h2_and_http11() {
    let Some((server, _dir, ca)) = tls_server(&[]) else {
        return;
    };
    for (offered, expected) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], b"h2".as_slice()),
        (&[b"http/1.1".as_slice()][..], b"http/1.1".as_slice()),
    ] {
        let tls = cascade_tests::h3client::client_tls(&ca, offered).unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(tls), name).unwrap();
        let mut tcp = std::net::TcpStream::connect(http_addr(&server)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        assert_eq!(conn.alpn_protocol(), Some(expected));
    }
}

/// The connection caps count a client's TCP and QUIC connections together: with
/// two TCP connections open from one address and a cap of two per address, a QUIC
/// handshake from it is refused until one closes.
#[tokio::test]
async fn tcp_and_quic_connections_share_the_per_address_cap() {
    let Some((server, _dir, ca)) = tls_server(&["--http-max-connections-per-ip", "2"]) else {
        return;
    };
    let addr = http_addr(&server);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The server counts a connection once it has accepted it: wait until it holds
    // both, reading the count from another address (127.0.0.2, its own share), so
    // that no connection from 127.0.0.1 competes with the two for the cap.
    let observer = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = match observer.get(server.url("/metrics")).send().await {
            Ok(r) => cascade_tests::metric_in(
                &r.text().await.unwrap_or_default(),
                "cascade_http_connections",
            ),
            Err(_) => None,
        };
        // The two held ones and the observer's own.
        if open.is_some_and(|n| n >= 3.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never held both TCP connections: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quic = tokio::time::timeout(Duration::from_secs(2), H3Client::connect(addr, &ca)).await;
    assert!(
        !matches!(quic, Ok(Ok(_))),
        "a QUIC connection beside two TCP ones from one address"
    );
    drop(held);
    let mut client = None;
    for _ in 0..50 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(2), H3Client::connect(addr, &ca)).await
        {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("QUIC connects once the TCP connections closed");
    let health = client.request("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(health.status, 200);
    client.close().await;
}

#[tokio::test]
async fn per_address_caps_see_the_quic_client() {
    let Some((server, _dir, ca)) = tls_server(&["--max-sessions-per-ip", "1"]) else {
        return;
    };
    let mut client = H3Client::connect(http_addr(&server), &ca).await.unwrap();
    let room = random_room("h3cap");
    let token = server.token(&room, "u", &["publish"]).unwrap();
    let auth = format!("Bearer {token}");
    let mut codes = Vec::new();
    for ssrc in [10u32, 20] {
        let offer = ClientPeer::new(
            PeerRole::Publisher {
                audio_ssrc: ssrc,
                video_ssrc: ssrc + 1,
            },
            &[],
        )
        .unwrap()
        .offer();
        let resp = client
            .request(
                "POST",
                &format!("/rtc/v1/rooms/{room}/publish"),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/sdp"),
                ],
                Some(offer.into_bytes()),
            )
            .await
            .unwrap();
        let code = if resp.status == 201 {
            String::new()
        } else {
            resp.json().unwrap()["code"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        };
        codes.push((resp.status, code));
    }
    assert_eq!(
        codes,
        vec![
            (201, String::new()),
            (429, "too_many_sessions_from_address".to_owned())
        ]
    );
    client.close().await;
}

#[tokio::test]
async fn address_validation_sends_new_clients_through_retry() {
    let Some((server, _dir, ca)) = tls_server(&["--http3-retry-above", "0"]) else {
        return;
    };
    let mut client = H3Client::connect(http_addr(&server), &ca).await.unwrap();
    let resp = client.request("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(resp.status, 200);
    client.close().await;
    // At least one: a client may send its first packet again before the Retry arrives.
    let retries = metric(&server.http_base, "cascade_http3_retries_total").await;
    assert!(retries.is_some_and(|n| n >= 1.0), "retries: {retries:?}");

    // Below the threshold (the default), nobody is sent through Retry.
    let Some((server, _dir, ca)) = tls_server(&[]) else {
        return;
    };
    let mut client = H3Client::connect(http_addr(&server), &ca).await.unwrap();
    let resp = client.request("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(resp.status, 200);
    client.close().await;
    let retries = metric(&server.http_base, "cascade_http3_retries_total").await;
    assert_eq!(retries, Some(0.0));
}

/// No 0-RTT: a client holding a session ticket from an earlier connection is not
/// offered early data (a replayed publish could otherwise create a session).
#[tokio::test]
async fn the_server_accepts_no_early_data() {
    let Some((server, _dir, ca)) = tls_server(&[]) else {
        return;
    };
    let addr = http_addr(&server);
    let mut tls = cascade_tests::h3client::client_tls(&ca, &[b"h3"]).unwrap();
    tls.enable_early_data = true;
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic_tls)));
    // A first connection, with a request on it, so the session ticket has arrived.
    let first = endpoint.connect(addr, "127.0.0.1").unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(first.clone()))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let req = http::Request::get(format!("https://{addr}/healthz"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
    first.close(0u32.into(), b"done");
    // The second connection resumes, but 0-RTT is refused before anything is sent.
    let second = endpoint.connect(addr, "127.0.0.1").unwrap();
    assert!(
        second.into_0rtt().is_err(),
        "the server offered 0-RTT to a resuming client"
    );
}

/// SIGTERM with an idle HTTP/3 connection open: the server closes it and exits
/// within the harness's shutdown timeout, as with idle TCP connections.
#[tokio::test]
async fn an_idle_http3_connection_does_not_hold_up_a_stop() {
    let Some((mut server, _dir, ca)) = tls_server(&[]) else {
        return;
    };
    let mut client = H3Client::connect(http_addr(&server), &ca).await.unwrap();
    let resp = client.request("GET", "/healthz", &[], None).await.unwrap();
    assert_eq!(resp.status, 200);
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap()
        .expect("the server exits on SIGTERM");
    assert!(status.success(), "{status}");
    client.close().await;
}

/// A connection with no request in progress for `--http-idle-timeout` is closed by
/// the server (HTTP/3's no-error code), even while the client keeps QUIC alive.
#[tokio::test]
async fn idle_http3_connections_are_closed() {
    let Some((server, _dir, ca)) = tls_server(&["--http-idle-timeout", "2"]) else {
        return;
    };
    let addr = http_addr(&server);
    let tls = cascade_tests::h3client::client_tls(&ca, &[b"h3"]).unwrap();
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut transport = quinn::TransportConfig::default();
    // Pings keep QUIC's own idle timer from ever firing.
    transport.keep_alive_interval(Some(Duration::from_millis(500)));
    let mut config = quinn::ClientConfig::new(std::sync::Arc::new(quic_tls));
    config.transport_config(std::sync::Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let quic = endpoint.connect(addr, "127.0.0.1").unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let req = http::Request::get(format!("https://{addr}/healthz"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(req).await.unwrap();
    stream.finish().await.unwrap();
    assert_eq!(stream.recv_response().await.unwrap().status(), 200);
    drop(stream);
    let closed = tokio::time::timeout(Duration::from_secs(15), quic.closed())
        .await
        .expect("the server closes the idle connection within 15 s");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(0x100));
        }
        other => panic!("closed otherwise: {other:?}"),
    }
}

#[tokio::test]
async fn http3_off_serves_and_advertises_nothing_on_udp() {
    let Some((server, _dir, ca)) = tls_server(&["--http3", "off"]) else {
        return;
    };
    let resp = http_client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("alt-svc").is_none());
    let attempt = tokio::time::timeout(
        Duration::from_secs(3),
        H3Client::connect(http_addr(&server), &ca),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "an HTTP/3 connection succeeded with --http3 off"
    );
}

/// Subscriber goal in Chromium: more than this many video frames decoded.
const MIN_FRAMES: u64 = 30;
/// Hard limit for the whole browser script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_forced_to_quic_publishes_and_subscribes_over_http3() {
    let tools = require(
        chromium_available(),
        &format!("Chromium at {}", chromium_path().display()),
    ) && require(command_available("node"), "node (Node.js)")
        && require(
            browser_node_modules_available(),
            "tests/browser/node_modules (run `npm ci` in tests/browser)",
        );
    if !tools {
        return;
    }
    let Some((server, _dir, _ca, cert)) = tls_server_with_cert(&[]) else {
        return;
    };
    let origin = http_addr(&server).to_string();
    let spki = cascade_tests::tls::spki_sha256_base64(&cert).unwrap();
    let room = random_room("h3browser");
    let pub_token = server
        .token(&room, "alice", &["publish", "subscribe"])
        .unwrap();
    let sub_token = server.token(&room, "bob", &["subscribe"]).unwrap();
    let child = tokio::process::Command::new("node")
        .arg(browser_dir().join("pubsub.mjs"))
        .current_dir(browser_dir())
        .env("CASCADE_BASE_URL", &server.http_base)
        .env("CASCADE_ROOM", &room)
        .env("CASCADE_PUB_TOKEN", &pub_token)
        .env("CASCADE_SUB_TOKEN", &sub_token)
        .env("CASCADE_MIN_FRAMES", MIN_FRAMES.to_string())
        .env(
            "CASCADE_HARD_TIMEOUT_MS",
            SCRIPT_TIMEOUT.as_millis().to_string(),
        )
        .env("CASCADE_QUIC_ORIGIN", &origin)
        .env("CASCADE_SPKI_HASH", &spki)
        .env("CHROMIUM_PATH", chromium_path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let out = tokio::time::timeout(
        SCRIPT_TIMEOUT + Duration::from_secs(15),
        child.wait_with_output(),
    )
    .await
    .expect("the browser script finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let context = format!(
        "report: {}\nstderr:\n{stderr}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{context}");
    let frames = report
        .pointer("/final_stats/video/framesDecoded")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    assert!(frames > MIN_FRAMES, "{frames} frames decoded\n{context}");
    for page in ["publisher", "subscriber"] {
        let protocols = &report["protocols"][page];
        assert_eq!(protocols["navigation"], "h3", "{page}\n{context}");
        let fetches = protocols["fetches"].as_array().cloned().unwrap_or_default();
        // publish or subscribe, then DELETE: at least two fetches, all over HTTP/3.
        assert!(fetches.len() >= 2, "{page}: {fetches:?}\n{context}");
        for f in &fetches {
            assert_eq!(f["protocol"], "h3", "{page}: {f}\n{context}");
        }
    }
}

/// Origin M1 and edge M2 with certificates from one CA; M2 trusts the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_opens_prefer_http3_once_the_origin_advertised_it() {
    use cascade_tests::media::connect;
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let dir = CertDir::new("h3relay").unwrap();
    let ca = TestCa::new(&dir, "ca").unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let cluster = [
        "--token-secret",
        "h3-users",
        "--cluster-secret",
        "h3-cluster",
    ];
    let start = |name: &str, extra: &[String]| {
        let mut args = tls_args(&ca.issue(&dir, name, ip).unwrap());
        args.extend(cluster.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        ServerProcess::start(&args).expect("server starts")
    };
    let m1 = start("m1", &[]);
    let m2 = start(
        "m2",
        &["--cluster-ca".into(), ca.pem.to_string_lossy().into_owned()],
    );
    let room = random_room("h3relay");
    let token = m1.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let mut publishers = Vec::new();
    for ssrc in [0x10u32, 0x20] {
        let publisher = connect(
            &m1,
            &format!("/rtc/v1/rooms/{room}/publish"),
            &token,
            PeerRole::Publisher {
                audio_ssrc: ssrc,
                video_ssrc: ssrc + 1,
            },
        )
        .await
        .expect("publisher connects");
        publishers.push(publisher);
    }
    let over_h3 = "cascade_cluster_requests_total{kind=\"relay_open_h3\"}";
    let mut subscribers = Vec::new();
    for (i, publisher) in publishers.iter().enumerate() {
        let subscriber = connect(
            &m2,
            &format!(
                "/rtc/v1/rooms/{room}/subscribe?resource={}",
                publisher.resource
            ),
            &token,
            PeerRole::Subscriber,
        )
        .await
        .expect("subscriber connects through the edge");
        subscribers.push(subscriber);
        // The first open learns Alt-Svc over TCP; the second goes over HTTP/3.
        assert_eq!(
            metric(&m2.http_base, over_h3).await,
            Some(i as f64),
            "relay opens over HTTP/3 after open {}",
            i + 1
        );
    }
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(2.0));
    // Media flows through the relay opened over HTTP/3.
    let (publisher, subscriber) = (&mut publishers[1], &subscribers[1]);
    subscriber
        .socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..300u16 {
        publisher
            .send_rtp(&rtp_packet(0x21, seq, u32::from(seq) * 3000, 96, 400))
            .unwrap();
        if subscriber.socket.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        if got >= 5 {
            break;
        }
    }
    assert!(got >= 5, "the subscriber received {got} packets");

    // The subscribers leave: after the relay grace, the edge closes both relays, and
    // it closes them over HTTP/3 too.
    for subscriber in &subscribers {
        let resp = http_client()
            .delete(&subscriber.resource)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let closed = wait_for_metric(
        &m1.http_base,
        "cascade_relays",
        Duration::from_secs(20),
        |v| v == 0.0,
    )
    .await;
    assert_eq!(
        closed,
        Ok(0.0),
        "the origin's relays after the edge closed them"
    );
    assert_eq!(
        metric(
            &m2.http_base,
            "cascade_cluster_requests_total{kind=\"relay_close_h3\"}"
        )
        .await,
        Some(2.0),
        "relay closes over HTTP/3"
    );
}

/// Two members on HTTPS handing rooms over by proxy: once the owner's answers have
/// advertised HTTP/3, the proxied publishes go over it, and are answered as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_requests_prefer_http3_once_the_owner_advertised_it() {
    use cascade_core::placement::{member_from_url, rank};
    use cascade_tests::media::connect;
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let dir = CertDir::new("h3proxy").unwrap();
    let ca = TestCa::new(&dir, "ca").unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let ports: Vec<u16> = (0..2).map(|_| cascade_tests::free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("https://127.0.0.1:{p}"))
        .collect();
    let members: Vec<_> = urls.iter().map(|u| member_from_url(u).unwrap()).collect();
    let servers: Vec<ServerProcess> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut args = tls_args(&ca.issue(&dir, &format!("m{i}"), ip).unwrap());
            args.extend(
                [
                    "--http-listen",
                    &format!("127.0.0.1:{port}"),
                    "--token-secret",
                    "h3-proxy-users",
                    "--members",
                    &urls.join(","),
                    "--handover",
                    "proxy",
                    "--cluster-ca",
                    &ca.pem.to_string_lossy(),
                ]
                .map(str::to_owned),
            );
            ServerProcess::start(&args).expect("server starts")
        })
        .collect();
    // Rooms owned by the second server, asked of the first.
    let rooms: Vec<String> = std::iter::repeat_with(|| random_room("h3proxy"))
        .filter(|room| *rank(room, &members)[0] == members[1])
        .take(3)
        .collect();
    let proxied_h3 = "cascade_cluster_requests_total{kind=\"proxy_h3\"}";
    for (i, room) in rooms.iter().enumerate() {
        let token = servers[0].token(room, "u", &["publish"]).unwrap();
        let publisher = connect(
            &servers[0],
            &format!("/rtc/v1/rooms/{room}/publish"),
            &token,
            PeerRole::Publisher {
                audio_ssrc: 0x40 + i as u32,
                video_ssrc: 0x50 + i as u32,
            },
        )
        .await
        .expect("a publish proxied to the owner connects");
        assert!(
            publisher.resource.starts_with(&urls[1]),
            "{room} served by its owner: {}",
            publisher.resource
        );
        // The first proxied call learns Alt-Svc over TCP; the next go over HTTP/3.
        assert_eq!(
            metric(&servers[0].http_base, proxied_h3).await,
            Some(i as f64),
            "proxied publishes over HTTP/3 after {}",
            i + 1
        );
    }
}
