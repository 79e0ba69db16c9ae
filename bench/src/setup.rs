//! `cascade-bench setup`: what the HTTP version costs a client joining a call over a
//! long path. Two network namespaces joined by the test harness's userspace link
//! emulator (`cascade_tests::linkemu`, a fixed one-way delay each way, so 50 and
//! 150 ms round trips); `cascade serve` with a TLS certificate on one side, a
//! publisher beside it sending 100 video packets/s (every one a keyframe), and the
//! client on the other side. For HTTP/1.1+TLS, HTTP/2+TLS and HTTP/3, over a new
//! connection each run (cold) and over one opened beforehand (warm), it times
//!
//! - `publish`: from sending `POST .../publish` (connecting first when cold) to the
//!   whole SDP answer;
//! - `subscribe`: from `POST .../subscribe` to the answer, and on to the first
//!   forwarded media packet decrypted (ICE and DTLS included, which every version
//!   shares).
//!
//! Each resource is deleted after its run, untimed. The figures are p50/p99 over
//! `runs` runs; the table also gives the cold answer time in round trips and what
//! HTTP/3 saves against the TCP versions.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use cascade_peer::{ClientPeer, PeerRole};
use cascade_tests::h3client::{H3Client, client_tls};
use cascade_tests::linkemu::LinkEmulator;
use cascade_tests::media::{LivePeer, complete_connect};
use cascade_tests::netns::Netns;
use cascade_tests::tls::{CertDir, TestCa, tls_args};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;

use crate::media::Latency;

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The publisher's video SSRC.
const VIDEO_SSRC: u32 = 0x5e70;
/// Longest one run may take before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the scenario runs.
pub(crate) struct Config {
    pub(crate) server_bin: PathBuf,
    /// Runs per (round trip, protocol, cold/warm).
    pub(crate) runs: usize,
    pub(crate) rtts: Vec<Duration>,
}

/// The HTTP versions compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Protocol {
    #[serde(rename = "HTTP/1.1+TLS")]
    Http1,
    #[serde(rename = "HTTP/2+TLS")]
    Http2,
    #[serde(rename = "HTTP/3")]
    Http3,
}

impl Protocol {
    const ALL: [Protocol; 3] = [Protocol::Http1, Protocol::Http2, Protocol::Http3];

    fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1+TLS",
            Protocol::Http2 => "HTTP/2+TLS",
            Protocol::Http3 => "HTTP/3",
        }
    }
}

/// One (round trip, protocol, cold/warm) cell.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) rtt_ms: u64,
    pub(crate) protocol: Protocol,
    pub(crate) cold: bool,
    pub(crate) publish_answer: Latency,
    pub(crate) subscribe_answer: Latency,
    pub(crate) first_media: Latency,
    pub(crate) failures: usize,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SetupReport {
    pub(crate) created_unix: u64,
    pub(crate) runs: usize,
    pub(crate) rows: Vec<Row>,
    pub(crate) method: Vec<String>,
    pub(crate) errors: Vec<String>,
}

/// Runs every cell and returns the report.
pub(crate) fn run(cfg: &Config) -> anyhow::Result<SetupReport> {
    if let Some(why) = cascade_tests::linkemu::unavailable_reason() {
        bail!("setup needs {why}");
    }
    // SAFETY: set before any thread of this process reads the environment.
    unsafe { std::env::set_var("CASCADE_BIN", &cfg.server_bin) };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for &rtt in &cfg.rtts {
        eprintln!("setup: {} ms round trip", rtt.as_millis());
        match run_path(cfg, rtt, &mut errors) {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => errors.push(format!("{} ms: {e:#}", rtt.as_millis())),
        }
    }
    Ok(SetupReport {
        created_unix: 0,
        runs: cfg.runs,
        rows,
        method: vec![
            "two namespaces joined by the userspace link emulator (TUN devices), half the round trip each way".into(),
            "cascade serve (debug or release as given) with a CA-issued certificate; a publisher beside it sends 100 keyframe packets/s".into(),
            "cold: a new TCP+TLS (TLS 1.3) or QUIC connection inside the timed span; warm: one connection opened before the runs".into(),
            "publish: request sent to SDP answer read; subscribe: to the answer, and to the first forwarded media packet decrypted (ICE + DTLS included)".into(),
            "0-RTT is off on the server: a cold HTTP/3 request waits for the QUIC handshake".into(),
        ],
        errors,
    })
}

/// One round trip: namespaces, emulator, server, publisher, then every cell.
fn run_path(cfg: &Config, rtt: Duration, errors: &mut Vec<String>) -> anyhow::Result<Vec<Row>> {
    let client_ns = Netns::new("setc")?;
    let server_ns = Netns::new("sets")?;
    let mut links = LinkEmulator::builder(rtt / 2);
    links.host(&client_ns, &format!("{CLIENT_IP}/24"))?;
    links.host(&server_ns, &format!("{SERVER_IP}/24"))?;
    let _links = links.start()?;

    let certs = CertDir::new("setup")?;
    let ca = TestCa::new(&certs, "setup-ca")?;
    let cert = ca.issue(&certs, "server", IpAddr::V4(SERVER_IP))?;
    let listen = format!("{SERVER_IP}:0");
    let mut args: Vec<String> = [
        "--http-listen",
        &listen,
        "--media-listen",
        &listen,
        "--public-ip",
        &SERVER_IP.to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(tls_args(&cert));
    let server = server_ns.spawn_server(&args)?;
    let base = server.http_base.clone();
    let addr: SocketAddr = base
        .strip_prefix("https://")
        .context("the server serves https")?
        .parse()?;
    let room = format!("setup-{}", rtt.as_millis());
    let token = server.token(&room, "bench", &["publish", "subscribe"])?;

    let publish_path = format!("/rtc/v1/rooms/{room}/publish");
    let _publisher = server_ns.block_on(|| {
        LivePeer::connect_from(
            &base,
            SocketAddr::from((SERVER_IP, 0)),
            &publish_path,
            &token,
            PeerRole::Publisher {
                audio_ssrc: VIDEO_SSRC + 1,
                video_ssrc: VIDEO_SSRC,
            },
            Some(VIDEO_SSRC),
        )
    })?;

    let ca_pem = ca.pem.clone();
    let runs = cfg.runs;
    let (rows, errs) = client_ns.block_on(|| async move {
        let mut rows = Vec::new();
        let mut errs = Vec::new();
        for protocol in Protocol::ALL {
            for cold in [true, false] {
                let mut cell = Cell::default();
                let mut warm = None;
                for i in 0..runs {
                    let run = tokio::time::timeout(
                        RUN_TIMEOUT,
                        one_run(protocol, cold, addr, &ca_pem, &room, &token, &mut warm),
                    )
                    .await;
                    match run {
                        Ok(Ok(t)) => cell.push(t),
                        Ok(Err(e)) => {
                            errs.push(format!(
                                "{} {} run {i}: {e:#}",
                                protocol.label(),
                                mode(cold)
                            ));
                            cell.failures += 1;
                            warm = None;
                        }
                        Err(_) => {
                            errs.push(format!(
                                "{} {} run {i}: timed out",
                                protocol.label(),
                                mode(cold)
                            ));
                            cell.failures += 1;
                            warm = None;
                        }
                    }
                }
                eprintln!(
                    "setup: {} ms {} {}: {} runs, {} failed",
                    rtt.as_millis(),
                    protocol.label(),
                    mode(cold),
                    runs,
                    cell.failures
                );
                rows.push(cell.row(rtt, protocol, cold));
                if let Some(conn) = warm.take() {
                    conn.close().await;
                }
            }
        }
        (rows, errs)
    });
    errors.extend(errs);
    Ok(rows)
}

fn mode(cold: bool) -> &'static str {
    if cold { "cold" } else { "warm" }
}

/// Timings of one run.
struct RunTimes {
    publish_answer: Duration,
    subscribe_answer: Duration,
    first_media: Duration,
}

/// The samples of one cell.
#[derive(Default)]
struct Cell {
    publish_answer: Vec<u32>,
    subscribe_answer: Vec<u32>,
    first_media: Vec<u32>,
    failures: usize,
}

impl Cell {
    fn push(&mut self, t: RunTimes) {
        let ns = |d: Duration| u32::try_from(d.as_nanos()).unwrap_or(u32::MAX);
        self.publish_answer.push(ns(t.publish_answer));
        self.subscribe_answer.push(ns(t.subscribe_answer));
        self.first_media.push(ns(t.first_media));
    }

    fn row(mut self, rtt: Duration, protocol: Protocol, cold: bool) -> Row {
        Row {
            rtt_ms: rtt.as_millis() as u64,
            protocol,
            cold,
            publish_answer: Latency::from_ns(&mut self.publish_answer),
            subscribe_answer: Latency::from_ns(&mut self.subscribe_answer),
            first_media: Latency::from_ns(&mut self.first_media),
            failures: self.failures,
        }
    }
}

/// One publish and one subscribe; `warm` holds the connection warm runs reuse.
async fn one_run(
    protocol: Protocol,
    cold: bool,
    addr: SocketAddr,
    ca: &Path,
    room: &str,
    token: &str,
    warm: &mut Option<Connection>,
) -> anyhow::Result<RunTimes> {
    if !cold && warm.is_none() {
        *warm = Some(Connection::open(protocol, addr, ca).await?);
    }
    let auth = format!("Bearer {token}");

    // Publish: the answer.
    let offer = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: rand::random::<u32>() | 1,
            video_ssrc: rand::random::<u32>() | 1,
        },
        &[],
    )?
    .offer();
    let started = Instant::now();
    let mut fresh = None;
    let conn = match warm {
        Some(c) => c,
        None => fresh.insert(Connection::open(protocol, addr, ca).await?),
    };
    let (status, location, answer) = conn
        .post_sdp(&format!("/rtc/v1/rooms/{room}/publish"), &auth, offer)
        .await?;
    let publish_answer = started.elapsed();
    if status != 201 {
        bail!("publish: {status}: {answer}");
    }
    conn.delete(&location, &auth).await?;
    if let Some(c) = fresh.take() {
        c.close().await;
    }

    // Subscribe: the answer, then ICE, DTLS and the first media packet.
    let mut peer = ClientPeer::new(PeerRole::Subscriber, &[])?;
    let offer = peer.offer();
    let socket = std::net::UdpSocket::bind(SocketAddr::from((CLIENT_IP, 0)))?;
    let started = Instant::now();
    let conn = match warm {
        Some(c) => c,
        None => fresh.insert(Connection::open(protocol, addr, ca).await?),
    };
    let (status, location, answer) = conn
        .post_sdp(&format!("/rtc/v1/rooms/{room}/subscribe"), &auth, offer)
        .await?;
    let subscribe_answer = started.elapsed();
    if status != 201 {
        bail!("subscribe: {status}: {answer}");
    }
    let resource = location.clone();
    let first_media = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
        let mut udp = complete_connect(&mut peer, socket, "subscribe", answer, resource)?;
        udp.socket
            .set_read_timeout(Some(Duration::from_millis(50)))?;
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + RUN_TIMEOUT;
        while Instant::now() < deadline {
            let Ok(n) = udp.socket.recv(&mut buf) else {
                continue;
            };
            let rtp = n > 12 && (128..192).contains(&buf[0]) && !(192..224).contains(&buf[1]);
            if rtp && udp.rx.unprotect_rtp(&mut buf[..n]).is_ok() {
                return Ok(started.elapsed());
            }
        }
        bail!("no media within {RUN_TIMEOUT:?}")
    })
    .await??;
    conn.delete(&location, &auth).await?;
    if let Some(c) = fresh.take() {
        c.close().await;
    }
    Ok(RunTimes {
        publish_answer,
        subscribe_answer,
        first_media,
    })
}

/// One HTTP connection of any of the three versions.
enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>, String),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>, String),
    Http3(H3Client),
}

impl Connection {
    async fn open(protocol: Protocol, addr: SocketAddr, ca: &Path) -> anyhow::Result<Self> {
        let base = format!("https://{addr}");
        let tls = |alpn: &[u8]| -> anyhow::Result<tokio_rustls::TlsConnector> {
            Ok(tokio_rustls::TlsConnector::from(Arc::new(client_tls(
                ca,
                &[alpn],
            )?)))
        };
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        match protocol {
            Protocol::Http1 | Protocol::Http2 => {
                let alpn: &[u8] = if protocol == Protocol::Http1 {
                    b"http/1.1"
                } else {
                    b"h2"
                };
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tls(alpn)?.connect(name, tcp).await?;
                let io = TokioIo::new(stream);
                if protocol == Protocol::Http1 {
                    let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                    tokio::spawn(conn);
                    Ok(Self::Http1(send, base))
                } else {
                    let (send, conn) =
                        hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                    tokio::spawn(conn);
                    Ok(Self::Http2(send, base))
                }
            }
            Protocol::Http3 => Ok(Self::Http3(H3Client::connect(addr, ca).await?)),
        }
    }

    /// POSTs an SDP offer; returns the status, the Location and the body.
    async fn post_sdp(
        &mut self,
        path: &str,
        auth: &str,
        offer: String,
    ) -> anyhow::Result<(u16, String, String)> {
        let headers = [("authorization", auth), ("content-type", "application/sdp")];
        let (status, headers, body) = self
            .request("POST", path, &headers, Some(offer.into_bytes()))
            .await?;
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((status, location, body))
    }

    /// DELETEs a resource (a URL of this server); 200 expected.
    async fn delete(&mut self, url: &str, auth: &str) -> anyhow::Result<()> {
        let path = url
            .find("/rtc/")
            .map(|at| &url[at..])
            .context("a resource URL")?
            .to_owned();
        let (status, _, body) = self
            .request("DELETE", &path, &[("authorization", auth)], None)
            .await?;
        if status != 200 {
            bail!("DELETE {path}: {status}: {body}");
        }
        Ok(())
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, http::HeaderMap, String)> {
        let build =
            |uri: String, host: Option<&str>| -> anyhow::Result<http::Request<Full<Bytes>>> {
                let mut req = http::Request::builder().method(method).uri(uri);
                if let Some(host) = host {
                    req = req.header(http::header::HOST, host);
                }
                for (n, v) in headers {
                    req = req.header(*n, *v);
                }
                Ok(req.body(Full::new(Bytes::from(body.clone().unwrap_or_default())))?)
            };
        let resp = match self {
            Self::Http1(send, base) => {
                send.ready().await?;
                let host = base.trim_start_matches("https://").to_owned();
                send.send_request(build(path.to_owned(), Some(&host))?)
                    .await?
            }
            Self::Http2(send, base) => {
                send.ready().await?;
                send.send_request(build(format!("{base}{path}"), None)?)
                    .await?
            }
            Self::Http3(client) => {
                let r = client.request(method, path, headers, body.clone()).await?;
                return Ok((
                    r.status,
                    r.headers,
                    String::from_utf8_lossy(&r.body).into_owned(),
                ));
            }
        };
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok((
            status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    async fn close(self) {
        if let Self::Http3(client) = self {
            client.close().await;
        }
    }
}

/// The terminal table: p50/p99 per cell in ms, cold answers in round trips, and
/// what HTTP/3 saves against each TCP version.
pub(crate) fn table(report: &SetupReport) -> String {
    let ms = |us: f64| us / 1000.0;
    let mut t = String::from(
        "setup: time to answer and to first media (ms, p50 / p99)\n\
         rtt  protocol      conn  publish→answer   subscribe→answer  subscribe→first media  answer RTTs  fails\n",
    );
    for r in &report.rows {
        t.push_str(&format!(
            "{:>3}  {:<12}  {:<4}  {:>6.1} / {:>6.1}  {:>7.1} / {:>6.1}  {:>9.1} / {:>7.1}  {:>10.2}  {:>5}\n",
            r.rtt_ms,
            r.protocol_label(),
            mode(r.cold),
            ms(r.publish_answer.p50_us),
            ms(r.publish_answer.p99_us),
            ms(r.subscribe_answer.p50_us),
            ms(r.subscribe_answer.p99_us),
            ms(r.first_media.p50_us),
            ms(r.first_media.p99_us),
            ms(r.publish_answer.p50_us) / r.rtt_ms as f64,
            r.failures,
        ));
    }
    for rtt in report
        .rows
        .iter()
        .map(|r| r.rtt_ms)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let find = |p: Protocol, cold: bool| {
            report
                .rows
                .iter()
                .find(|r| r.rtt_ms == rtt && r.protocol == p && r.cold == cold)
        };
        for cold in [true, false] {
            let Some(h3) = find(Protocol::Http3, cold) else {
                continue;
            };
            for tcp in [Protocol::Http1, Protocol::Http2] {
                let Some(other) = find(tcp, cold) else {
                    continue;
                };
                let saved = ms(other.publish_answer.p50_us - h3.publish_answer.p50_us);
                let saved_media = ms(other.first_media.p50_us - h3.first_media.p50_us);
                t.push_str(&format!(
                    "{rtt} ms {}: HTTP/3 saves {saved:.1} ms ({:.2} round trips) to the publish answer and {saved_media:.1} ms to first media vs {}\n",
                    mode(cold),
                    saved / rtt as f64,
                    tcp.label(),
                ));
            }
        }
    }
    t
}

impl Row {
    fn protocol_label(&self) -> &'static str {
        self.protocol.label()
    }
}
