//! HTTP/3 for `cascade serve`: the same axum router as the TCP listener, served over
//! QUIC (quinn, with hyperium's h3 on top) on the UDP port of the HTTPS port, with the
//! same certificate. It owns the QUIC endpoint and what bounds a client there:
//!
//! - open connections, in total and per client address, counted apart from TCP's
//!   but with the same caps ([`HttpLimits`]);
//! - concurrent requests per connection (QUIC's bidirectional stream limit, as
//!   HTTP/2's `max_concurrent_streams`), the time to finish a handshake and to send
//!   request headers, and the time a connection stays with no request in progress;
//! - address validation: while more than [`Http3Options::retry_above`] handshakes are
//!   in progress, a client that has not yet proved its address gets a Retry packet
//!   first (one extra round trip for it, none of our state for a spoofed source);
//! - no 0-RTT: the TLS configuration accepts no early data, so a replayed request can
//!   never reach a handler (a publish is not idempotent).
//!
//! Request bodies go through the router's own middleware (size cap and body
//! timeout), as on TCP. Every request carries the client's address as axum's
//! `ConnectInfo`. [`advertise`] adds `Alt-Svc` to the TCP side's responses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::limits::{HttpLimits, OpenCap, Refusal};
use crate::listener::{Activity, H2_MAX_STREAMS, InProgress, ListenerCounters, SHUTDOWN_GRACE};

/// Largest request header section accepted, bytes (QPACK-decoded).
const MAX_HEADER_SECTION: u64 = 16 * 1024;
/// Unidirectional streams a client may open: HTTP/3's control stream, QPACK's
/// encoder and decoder streams, and room for a few reserved (grease) ones.
const MAX_UNI_STREAMS: u32 = 8;
/// HTTP/3's "no error" code (RFC 9114, section 8.1), used to close idle connections.
const H3_NO_ERROR: u32 = 0x100;
/// When stopping, how long a connection must have had no request in progress to be
/// closed before the grace period ends.
const STOP_SETTLE: Duration = Duration::from_millis(50);

/// Settings of the HTTP/3 side beyond the shared [`HttpLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http3Options {
    /// Handshakes in progress above which a new client must first prove its address
    /// with a Retry round trip; 0 sends every new client through Retry.
    pub retry_above: usize,
}

impl Default for Http3Options {
    fn default() -> Self {
        Self { retry_above: 64 }
    }
}

/// What the HTTP/3 side reports, besides the listener's connection counters.
#[derive(Debug, Clone)]
pub struct Http3Counters {
    pub listener: ListenerCounters,
    /// Clients sent a Retry to validate their address.
    pub retries: prometheus::IntCounter,
}

/// The QUIC endpoint on the bound UDP `socket`, serving `tls`'s certificate with
/// ALPN `h3`.
pub fn endpoint(
    socket: std::net::UdpSocket,
    tls: &rustls::ServerConfig,
    limits: &HttpLimits,
) -> anyhow::Result<quinn::Endpoint> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // No 0-RTT: early data could be replayed, and a publish is not idempotent.
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("the TLS configuration cannot serve QUIC (it needs TLS 1.3)")?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(H2_MAX_STREAMS))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_UNI_STREAMS))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.idle_timeout)
                .context("the HTTP idle timeout is too long for QUIC")?,
        ));
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    let addr = socket.local_addr()?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .with_context(|| format!("cannot serve HTTP/3 on UDP {addr}"))
}

/// Middleware for the TCP side: tells clients that HTTP/3 is served on `port`.
pub fn advertise(router: Router, port: u16) -> Router {
    let value = http::HeaderValue::from_str(&alt_svc(port))
        // Digits and ASCII punctuation only: always a valid header value.
        .expect("a valid Alt-Svc value");
    router.layer(axum::middleware::map_response(move |mut resp: Response| {
        let value = value.clone();
        async move {
            resp.headers_mut().insert(http::header::ALT_SVC, value);
            resp
        }
    }))
}

/// The `Alt-Svc` value advertising HTTP/3 on `port` of the same host for a day.
pub fn alt_svc(port: u16) -> String {
    format!("h3=\":{port}\"; ma=86400")
}

/// Serves `router` on `endpoint` until `shutdown` resolves, then lets open
/// connections finish for a few seconds. `cap` counts open connections in total and
/// per address (shared with the TCP listener).
pub async fn serve(
    endpoint: quinn::Endpoint,
    router: Router,
    cap: OpenCap,
    limits: HttpLimits,
    options: Http3Options,
    counters: Http3Counters,
    shutdown: impl Future<Output = ()>,
) {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let peer = incoming.remote_address();
        if !incoming.remote_address_validated()
            && handshakes.load(Ordering::Acquire) >= options.retry_above
        {
            counters.retries.inc();
            if let Err(e) = incoming.retry() {
                // Not retryable (it came with a Retry token already): drop it.
                e.into_incoming().ignore();
            }
            continue;
        }
        let permit = match cap.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(r) => {
                let reason = match r {
                    Refusal::Total => "connections",
                    Refusal::PerAddress => "connections_per_address",
                };
                counters.listener.refused.with_label_values(&[reason]).inc();
                tracing::debug!(%peer, reason = ?r, "HTTP/3 connection refused: at the cap");
                incoming.refuse();
                continue;
            }
        };
        let connecting = match incoming.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "QUIC handshake failed");
                continue;
            }
        };
        let handshake = Handshake::begin(&handshakes);
        let router = router.clone();
        let stop = stop_rx.clone();
        let open = OpenConnection::new(counters.listener.open.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let conn = match tokio::time::timeout(limits.header_timeout, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "QUIC handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "QUIC handshake timed out");
                    return;
                }
            };
            drop(handshake);
            serve_connection(conn, peer, router, limits, stop).await;
        });
    }
    let _ = stop_tx.send(true);
    cap.drained(SHUTDOWN_GRACE + Duration::from_secs(1)).await;
    endpoint.close(quinn::VarInt::from_u32(H3_NO_ERROR), b"server stopping");
}

/// A handshake in progress, counted for the Retry threshold until dropped.
struct Handshake(Arc<AtomicUsize>);

impl Handshake {
    fn begin(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection counted in the open-connections gauge until dropped.
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_connection(
    conn: quinn::Connection,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let quic = conn.clone();
    let mut builder = h3::server::builder();
    builder.max_field_section_size(MAX_HEADER_SECTION);
    let built = builder.build::<_, Bytes>(h3_quinn::Connection::new(conn));
    let mut h3 = match tokio::time::timeout(limits.header_timeout, built).await {
        Ok(Ok(h3)) => h3,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection setup failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/3 connection setup timed out");
            return;
        }
    };
    let activity = Arc::new(Activity::new());
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let busy = activity.begin();
                    let router = router.clone();
                    tokio::spawn(async move {
                        let resolved = tokio::time::timeout(
                            limits.header_timeout,
                            resolver.resolve_request(),
                        );
                        match resolved.await {
                            Ok(Ok((req, stream))) => {
                                serve_request(req, stream, peer, router, busy).await;
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "bad HTTP/3 request"),
                            Err(_) => tracing::debug!(%peer, "HTTP/3 request headers timed out"),
                        }
                    });
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                    return;
                }
            },
            () = activity.idle_for(limits.idle_timeout) => {
                tracing::debug!(%peer, "closing an idle HTTP/3 connection");
                quic.close(quinn::VarInt::from_u32(H3_NO_ERROR), b"idle");
                return;
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    // Stopping: no new requests (GOAWAY); those in progress get the grace period,
    // then the connection closes (a client keeping an idle connection open does not
    // hold the server up).
    let _ = h3.shutdown(0).await;
    let drained = async {
        let accept = async {
            while let Ok(Some(_)) = h3.accept().await {}
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = activity.idle_for(STOP_SETTLE) => {}
            () = accept => {}
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
    quic.close(quinn::VarInt::from_u32(H3_NO_ERROR), b"server stopping");
}

type QuicStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Runs one request through the router and streams its response back; `busy`
/// marks the request in progress until the response is done.
async fn serve_request(
    req: http::Request<()>,
    stream: QuicStream,
    peer: SocketAddr,
    router: Router,
    busy: InProgress,
) {
    let (mut send, recv) = stream.split();
    let body = Body::from_stream(futures_util::stream::unfold(Some(recv), |recv| async {
        let mut recv = recv?;
        match recv.recv_data().await {
            Ok(Some(mut chunk)) => Some((Ok(chunk.copy_to_bytes(chunk.remaining())), Some(recv))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    }));
    let mut req: Request = req.map(|()| body);
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (mut parts, mut body) = resp.into_parts();
    // Connection-specific fields are malformed in HTTP/3 (RFC 9114, section 4.2).
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        parts.headers.remove(name);
    }
    if let Err(e) = send.send_response(Response::from_parts(parts, ())).await {
        tracing::debug!(%peer, error = %e, "HTTP/3 response not sent");
        return;
    }
    while let Some(frame) = body.frame().await {
        let sent = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => send.send_data(data).await,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => send.send_trailers(trailers).await,
                    Err(_) => Ok(()),
                },
            },
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 response body failed");
                return;
            }
        };
        if let Err(e) = sent {
            // The client went away (or reset the stream): stop producing the body.
            tracing::debug!(%peer, error = %e, "HTTP/3 response cut short");
            return;
        }
    }
    let _ = send.finish().await;
    drop(busy);
}
