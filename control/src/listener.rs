//! The HTTP listener of `cascade serve`: accepts TCP connections (TLS when
//! configured), serves the API router on each with hyper (HTTP/1.1 and HTTP/2), and
//! bounds what a slow or greedy client can hold ([`HttpLimits`]):
//!
//! - open connections, in total and per client address: beyond either, a new
//!   connection is closed as soon as it is accepted;
//! - the time to send request headers (hyper's `header_read_timeout`, which needs a
//!   timer: `axum::serve` sets none, so that timeout never fired there) and to finish
//!   a TLS handshake;
//! - the time to send a whole request body ([`read_body_within`]);
//! - the time a connection stays open with no request in progress (a response
//!   still streaming, such as an event stream, counts as in progress);
//! - the time a write stays blocked on a client that reads nothing (its receive
//!   window full): the connection is closed, so a response or event stream nobody
//!   reads holds nothing for long (`tokio-io-timeout`; hyper has no write timeout).
//!
//! Every request carries the client's address as axum's `ConnectInfo`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::error::HttpError;
use crate::limits::{HttpLimits, OpenCap, OpenPermit, Refusal};
use cascade_core::error::{ApiError, ErrorKind};

/// How long open connections get to finish when the server stops.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Concurrent requests on one HTTP/2 connection (and on one HTTP/3 connection).
pub(crate) const H2_MAX_STREAMS: u32 = 64;

/// Binds the HTTP listener on TCP `addr` and, when `udp_too` (HTTP/3), a UDP socket
/// on the same port. With port 0 the kernel picks the TCP port, which may be taken
/// on UDP: then another is picked, a few times over.
pub async fn bind(
    addr: SocketAddr,
    udp_too: bool,
) -> anyhow::Result<(TcpListener, Option<std::net::UdpSocket>)> {
    use anyhow::Context as _;
    const TRIES: usize = 32;
    let mut tries = 0;
    loop {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind HTTP {addr}"))?;
        if !udp_too {
            return Ok((tcp, None));
        }
        let local = tcp.local_addr()?;
        match std::net::UdpSocket::bind(local) {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(_) if addr.port() == 0 && tries < TRIES => tries += 1,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot bind HTTP/3 on UDP {local}"));
            }
        }
    }
}

/// Marks an answer given while the request's body is left unread: on HTTP/1 the
/// connection cannot carry another request, so it closes (an HTTP/2 or HTTP/3 stream
/// ends by itself).
pub(crate) fn close_unread(resp: &mut Response, version: http::Version) {
    if version <= http::Version::HTTP_11 {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// What the listener reports: open connections, and those refused at accept.
#[derive(Debug, Clone)]
pub struct ListenerCounters {
    pub open: prometheus::IntGauge,
    pub refused: prometheus::IntCounterVec,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish for a few seconds. `cap` counts open connections in total and
/// per address (shared with HTTP/3).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    cap: OpenCap,
    limits: HttpLimits,
    counters: ListenerCounters,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match cap.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(r) => {
                let reason = match r {
                    Refusal::Total => "connections",
                    Refusal::PerAddress => "connections_per_address",
                };
                counters.refused.with_label_values(&[reason]).inc();
                tracing::debug!(%peer, reason = ?r, "connection refused: at the cap");
                drop(tcp);
                continue;
            }
        };
        counters.open.inc();
        let conn = Connection {
            peer,
            router: router.clone(),
            limits,
            stop: stop_rx.clone(),
            counters: counters.clone(),
            _permit: permit,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            // Under TLS too: a client that stops reading blocks the TLS writes.
            let mut tcp = tokio_io_timeout::TimeoutStream::new(tcp);
            tcp.set_write_timeout(Some(conn.limits.write_timeout));
            let tcp = Box::pin(tcp);
            match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(conn.limits.header_timeout, acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(tls)) => conn.run(tls).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => conn.run(tcp).await,
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    cap.drained(SHUTDOWN_GRACE + Duration::from_secs(1)).await;
}

/// One accepted connection and what it needs to be served.
struct Connection {
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    stop: tokio::sync::watch::Receiver<bool>,
    counters: ListenerCounters,
    /// Its place under the connection caps, freed when it closes.
    _permit: OpenPermit,
}

impl Connection {
    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let peer = self.peer;
        let router = self.router.clone();
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = requests.begin();
            let router = router.clone();
            async move {
                let resp = router.oneshot(req.map(Body::new)).await?;
                // The request is in progress until its response body is done or dropped.
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _in_progress = &busy;
                        frame
                    }))
                }))
            }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .keep_alive_interval(Some(self.limits.header_timeout))
            .keep_alive_timeout(self.limits.header_timeout);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            () = activity.idle_for(self.limits.idle_timeout) => {
                tracing::debug!(%peer, "closing an idle connection");
            }
            _ = self.stop.wait_for(|stop| *stop) => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters.open.dec();
    }
}

/// Requests in progress on one connection and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    in_progress: AtomicUsize,
    since: Mutex<Instant>,
}

/// One request in progress; dropping it ends it.
#[derive(Debug)]
pub(crate) struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            in_progress: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn begin(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InProgress(self.clone())
    }

    fn touch(&self) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Resolves once no request has been in progress for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
            tokio::time::sleep_until(since + idle).await;
            let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
            if self.in_progress.load(Ordering::Acquire) == 0 && since.elapsed() >= idle {
                return;
            }
            if self.in_progress.load(Ordering::Acquire) > 0 {
                // Busy: look again one period from now.
                self.touch();
            }
        }
    }
}

/// Middleware: reads a request's body in full, at most `max` bytes, within the body
/// timeout, before the handler runs, so a client that trickles its body is cut off
/// (408) however steadily it sends. Requests without a body pass untouched.
/// (tower-http's `RequestBodyTimeoutLayer` restarts its timer on every frame, which a
/// client sending one byte every few seconds never trips.)
pub async fn read_body_within(
    State((timeout, max)): State<(Duration, usize)>,
    req: Request,
    next: Next,
) -> Response {
    use axum::body::HttpBody as _;
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let version = parts.version;
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => HttpError(ApiError::new(
            ErrorKind::PayloadTooLarge,
            "bad_body",
            format!("the request body is larger than {max} bytes"),
        ))
        .into_response(),
        Ok(Err(e)) => HttpError(ApiError::bad_request(
            "bad_body",
            format!("the request body could not be read: {e}"),
        ))
        .into_response(),
        Err(_) => {
            let mut resp = HttpError(ApiError::new(
                ErrorKind::RequestTimeout,
                "body_timeout",
                format!("the request body took longer than {} s", timeout.as_secs()),
            ))
            .into_response();
            close_unread(&mut resp, version);
            resp
        }
    }
}
