//! Slow and greedy HTTP clients against a real `cascade serve`: 300 connections that
//! trickle request headers and 50 that trickle a declared body, while `/healthz`
//! keeps answering and a publisher and a subscriber connect over HTTP and exchange
//! media; the server closes the slow connections (timeouts shortened by flags). Also
//! the connection caps (total, per address), the body timeout's 408, the 413 for an
//! oversized body, a missing token refused before the body, the write timeout for a
//! client that reads nothing, and the same listener serving HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cascade_peer::PeerRole;
use cascade_tests::media::{connect, rtp_packet};
use cascade_tests::slowloris::{connect_from, slow_connections};
use cascade_tests::{ServerProcess, cascade_bin, http_client, random_room, require};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Timeouts short enough for a test; the defaults (10 s headers, 20 s body, 60 s idle)
/// close the same connections within a minute.
const SHORT_TIMEOUTS: [&str; 6] = [
    "--http-header-timeout",
    "2",
    "--http-body-timeout",
    "3",
    "--http-idle-timeout",
    "5",
];

/// How long a slow connection may stay open before the test calls it a failure.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

fn server(extra: &[&str]) -> Option<ServerProcess> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    Some(ServerProcess::start(extra).expect("server starts"))
}

fn http_addr(server: &ServerProcess) -> SocketAddr {
    let host = server
        .http_base
        .split("://")
        .nth(1)
        .expect("http_base has a scheme");
    host.parse().expect("http_base is ip:port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_neither_starves_the_server_nor_keeps_connections() {
    let mut args = SHORT_TIMEOUTS.to_vec();
    // The caps are not what this test is about: room for every slow connection.
    args.extend([
        "--http-max-connections",
        "2000",
        "--http-max-connections-per-ip",
        "1000",
    ]);
    let Some(server) = server(&args) else { return };
    let addr = http_addr(&server);
    let open = Arc::new(AtomicUsize::new(0));

    // 300 connections that never finish their headers...
    let mut slow = slow_connections(
        300,
        "127.0.0.2",
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        &open,
        CLOSE_WITHIN,
    );
    // ...and 50 that declare a 60,000-byte body and send it one byte at a time, with
    // a valid token (without one they are refused before their body).
    let room = random_room("slow");
    let token = server.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let body_head = format!(
        "POST /rtc/v1/rooms/{room}/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/sdp\r\nContent-Length: 60000\r\n\r\n"
    );
    slow.extend(slow_connections(
        50,
        "127.0.0.3",
        addr,
        body_head.as_bytes(),
        &open,
        CLOSE_WITHIN,
    ));

    // Wait until they are all open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::Relaxed) < 350 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile: health answers, and a publisher and a subscriber connect over HTTP.
    let health = tokio::spawn({
        let url = server.url("/healthz");
        async move {
            let client = http_client();
            let mut answers = 0;
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                let resp = client.get(&url).send().await.expect("/healthz answers");
                assert_eq!(resp.status(), 200);
                answers += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answers
        }
    });
    let slow_still_open = open.load(Ordering::Relaxed);
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
    .expect("publisher connects while the slow clients hold connections");
    let mut subscriber = connect(
        &server,
        &format!("/rtc/v1/rooms/{room}/subscribe"),
        &token,
        PeerRole::Subscriber,
    )
    .await
    .expect("subscriber connects while the slow clients hold connections");
    assert!(
        slow_still_open >= 300,
        "the slow connections were not open during publish/subscribe ({slow_still_open})"
    );
    // Media reaches the subscriber.
    subscriber
        .socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 0u16;
    while got < 10 && Instant::now() < deadline {
        publisher
            .send_rtp(&rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 200))
            .unwrap();
        seq = seq.wrapping_add(1);
        if let Ok((n, _)) = subscriber.socket.recv_from(&mut buf)
            && (128..192).contains(&buf[0])
            && !(192..224).contains(&buf[1])
            && subscriber.rx.unprotect_rtp(&mut buf[..n]).is_ok()
        {
            got += 1;
        }
    }
    assert!(got >= 10, "the subscriber got {got} packets");
    assert!(health.await.unwrap() > 0);

    // The server closed every slow connection.
    let mut closed_after = Vec::new();
    for s in slow {
        closed_after.push(s.await.unwrap().expect("a slow connection stayed open"));
    }
    let longest = closed_after.iter().max().unwrap();
    assert!(*longest < CLOSE_WITHIN, "longest {longest:?}");
}

#[tokio::test]
async fn body_timeout_answers_408_and_an_oversized_body_413() {
    let Some(server) = server(&SHORT_TIMEOUTS) else {
        return;
    };
    let addr = http_addr(&server);
    let token = server.token("r", "u", &["publish"]).unwrap();
    // A body that is never finished: 408 JSON, then the server closes.
    let mut stream = connect_from("127.0.0.1", addr).await.unwrap();
    stream
        .write_all(format!("POST /rtc/v1/rooms/r/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/sdp\r\nContent-Length: 100\r\n\r\nv=0\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(CLOSE_WITHIN, stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");

    // Too large: 413 with the JSON error.
    let resp = http_client()
        .post(server.url("/rtc/v1/rooms/r/publish"))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body(vec![b'a'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "bad_body", "{v}");
}

/// A request that needs a token is refused on its headers, before its body: a
/// publish that declares a 60,000-byte body and sends none gets its 401 at once (not
/// the body timeout's 408), and the connection is closed; with a valid token the
/// server waits for the body as before.
#[tokio::test]
async fn a_request_without_a_valid_token_is_refused_before_its_body() {
    let Some(server) = server(&["--http-body-timeout", "20"]) else {
        return;
    };
    let addr = http_addr(&server);
    let room = random_room("preauth");
    let valid = server.token(&room, "u", &["publish"]).unwrap();
    let subscribe_only = server.token(&room, "u", &["subscribe"]).unwrap();
    let head = |auth: &str| {
        format!(
            "POST /rtc/v1/rooms/{room}/publish HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/sdp\r\nContent-Length: 60000\r\n\r\n"
        )
    };
    for (auth, status, code) in [
        (String::new(), "401", "token_missing"),
        (
            "Authorization: Bearer not.a.token\r\n".to_owned(),
            "401",
            "token_malformed",
        ),
        (
            format!("Authorization: Bearer {subscribe_only}\r\n"),
            "403",
            "token_missing_grant",
        ),
    ] {
        let mut stream = connect_from("127.0.0.1", addr).await.unwrap();
        stream.write_all(head(&auth).as_bytes()).await.unwrap();
        let start = Instant::now();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
            .await
            .expect("an answer and a close well before the body timeout")
            .unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
        assert!(text.contains(&format!("\"code\":\"{code}\"")), "{text}");
        eprintln!("{code}: answered and closed after {:?}", start.elapsed());
    }
    // A valid token: the server waits for the body...
    let mut stream = connect_from("127.0.0.1", addr).await.unwrap();
    stream
        .write_all(head(&format!("Authorization: Bearer {valid}\r\n")).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
    assert!(early.is_err(), "an answer before the body: {early:?}");
    // ...and reads it: 60,000 bytes that are no SDP.
    stream.write_all(&vec![b'x'; 60_000]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer once the body is in")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

#[tokio::test]
async fn connection_caps_in_total_and_per_address() {
    let mut args = SHORT_TIMEOUTS.to_vec();
    args.extend([
        "--http-max-connections",
        "20",
        "--http-max-connections-per-ip",
        "5",
    ]);
    let Some(server) = server(&args) else { return };
    let addr = http_addr(&server);
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Whether the server answers a request on `stream` (a refused connection is
    /// closed without an answer).
    async fn answers(stream: &mut TcpStream, req: &[u8]) -> bool {
        if stream.write_all(req).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
        )
    }

    // Five from one address are served; a sixth is closed.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from("127.0.0.2", addr).await.unwrap();
        assert!(answers(&mut s, get).await);
        held.push(s);
    }
    let mut sixth = connect_from("127.0.0.2", addr).await.unwrap();
    assert!(
        !answers(&mut sixth, get).await,
        "a sixth connection from one address"
    );
    // Another address still gets in, up to the total of 20.
    for i in 3..6 {
        for _ in 0..5 {
            let mut s = connect_from(&format!("127.0.0.{i}"), addr).await.unwrap();
            assert!(answers(&mut s, get).await);
            held.push(s);
        }
    }
    assert_eq!(held.len(), 20);
    let mut over = connect_from("127.0.0.9", addr).await.unwrap();
    assert!(!answers(&mut over, get).await, "a 21st connection");
    let text = get_on(&mut held[0], "/metrics").await;
    assert_eq!(
        cascade_tests::metric_in(&text, "cascade_refused_total{reason=\"connections\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        cascade_tests::metric_in(
            &text,
            "cascade_refused_total{reason=\"connections_per_address\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        cascade_tests::metric_in(&text, "cascade_http_connections"),
        Some(20.0)
    );
    // Closing some makes room again.
    held.truncate(15);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect_from("127.0.0.9", addr).await.unwrap();
        if answers(&mut s, get).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after closing connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET path` as HTTP/1.0 on an open connection (the server then answers without
/// chunks and closes it); the response body.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("a response")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    let (_, body) = text.split_once("\r\n\r\n").expect("a response with a body");
    body.to_owned()
}

#[tokio::test]
async fn idle_connections_are_closed() {
    // An idle time well below the header time, so what closes the connection below
    // is the idle timeout, not the wait for the next request's headers.
    let Some(server) = server(&["--http-header-timeout", "60", "--http-idle-timeout", "2"]) else {
        return;
    };
    let addr = http_addr(&server);
    // One request, then silence.
    let mut s = connect_from("127.0.0.1", addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle connection stayed open {:?}",
        start.elapsed()
    );

    // Connected, and not a byte sent: closed as well.
    let mut s = connect_from("127.0.0.1", addr).await.unwrap();
    let closed = tokio::time::timeout(CLOSE_WITHIN, s.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");

    // An event stream is a request in progress: it outlives the idle time.
    let room = random_room("idle");
    let token = server.token(&room, "u", &["publish"]).unwrap();
    // (A client without the harness's 10 s limit on a whole response.)
    let streaming = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut events = streaming
        .get(server.url(&format!("/rtc/v1/rooms/{room}/events?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    // Keep-alive comments arrive every 15 s; the stream must still be open after
    // the 2 s idle time.
    let chunk = tokio::time::timeout(Duration::from_secs(25), events.chunk())
        .await
        .expect("the stream delivers its keep-alive");
    assert!(
        matches!(chunk, Ok(Some(_))),
        "the event stream was closed: {chunk:?}"
    );
}

/// A client that asks for a lot and reads nothing: once the server's writes have
/// been blocked for the write timeout, it closes the connection, although a
/// response is still in progress (which the idle timeout leaves alone).
#[tokio::test]
async fn a_client_that_reads_nothing_is_closed_after_the_write_timeout() {
    let Some(server) = server(&["--http-write-timeout", "2", "--http-idle-timeout", "60"]) else {
        return;
    };
    let addr = http_addr(&server);
    let open = "cascade_http_connections";
    // A small receive window, and 200 pipelined requests for the call page's script
    // (about 80 KB each): far more than the socket buffers hold.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let script = http_client()
        .get(server.url("/call.js"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert!(script > 50_000, "/call.js is {script} bytes");
    let requests = "GET /call.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    s.write_all(requests.as_bytes()).await.unwrap();
    let start = Instant::now();
    // Besides the stalled one, only the connection that reads the metrics is open.
    let closed =
        cascade_tests::wait_for_metric(&server.http_base, open, CLOSE_WITHIN, |v| v <= 1.0).await;
    assert_eq!(
        closed,
        Ok(1.0),
        "the stalled connection stayed open {:?}",
        start.elapsed()
    );
    eprintln!(
        "a client reading nothing was closed after {:?}",
        start.elapsed()
    );
    // Reading now gets what the buffers held, then the end: not all 200 responses.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let read_all = tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(read_all.is_ok(), "the connection did not end");
    assert!(
        got < 200 * script,
        "{got} bytes: every response was delivered"
    );
    // The server serves others as before.
    let health = http_client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn the_listener_serves_https_and_closes_stalled_handshakes() {
    use cascade_tests::tls::{CertDir, TestCa, tls_args};
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let dir = CertDir::new("slow").unwrap();
    let ca = TestCa::new(&dir, "ca").unwrap();
    let cert = ca.issue(&dir, "m1", "127.0.0.1".parse().unwrap()).unwrap();
    let mut args: Vec<String> = tls_args(&cert);
    args.extend(SHORT_TIMEOUTS.iter().map(|s| s.to_string()));
    let server = ServerProcess::start(&args).expect("server starts");
    assert!(
        server.http_base.starts_with("https://"),
        "{}",
        server.http_base
    );
    let resp = http_client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http_client()
        .post(server.url("/rtc/v1/rooms/r/publish"))
        .bearer_auth(server.token("r", "u", &["publish"]).unwrap())
        .header("content-type", "application/sdp")
        .body(vec![b'a'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // A client that connects and never starts TLS is closed.
    let mut s = connect_from("127.0.0.1", http_addr(&server)).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(CLOSE_WITHIN, s.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "a stalled TLS handshake stayed open: {closed:?}"
    );
}
