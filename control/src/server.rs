//! `cascade serve`: the I/O shell around the sans-IO SFU core. It binds the HTTP
//! listener and the media port, runs the thread that feeds STUN/DTLS datagrams and
//! timeouts into the core, and hands the core's outputs to the data plane. All
//! decisions live in [`crate::sfu`]; all per-packet work lives in the data plane.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_command::command::Upcall;
use cascade_dataplane::worker::{BackendChoice, Dataplane, DataplaneConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster_h3::Call;
use crate::config::Handover;
use crate::config::{Capacity, DataplaneArg, ServeConfig};
use crate::kernel::KernelShell;
use crate::limits::{HttpLimits, OpenCap};
use crate::listener::ListenerCounters;
use crate::metrics::{CoreGauges, Metrics};
use crate::unix_now;
use cascade_core::cert::DtlsCertificate;
use cascade_core::error::{ApiError, ErrorKind};
use cascade_core::sfu::{RelayAnswer, ResourceEvent, RoomEvent, SessionLimits, Sfu, SfuOutput};
use cascade_core::token::{Claims, Grant, TokenSecret, TokenVerifier, mint};
use cascade_dns::membership::Membership;

/// Longest the media thread sleeps when no datagram arrives and no timer is due.
const MAX_IDLE: Duration = Duration::from_millis(100);

/// Shared by HTTP handlers and the media thread.
pub struct AppState {
    sfu: Mutex<Sfu>,
    dataplane: Dataplane,
    /// The eBPF fast path, when attached.
    kernel: Option<Mutex<KernelShell>>,
    pub verifier: TokenVerifier,
    /// Key of cluster service tokens; relaying is off without it.
    pub cluster_secret: Option<TokenSecret>,
    pub cluster_insecure_http: bool,
    /// The HTTP API is served over TLS (so relay answers may carry keys).
    pub tls: bool,
    /// This server's name in cluster tokens (its public URL).
    pub server_name: String,
    /// The address edges give origins for relayed packets (our media candidate).
    pub relay_addr: SocketAddr,
    /// Calls to other servers (relays, proxied requests, room listings), over
    /// HTTP/3 to origins that advertised it.
    pub(crate) cluster: crate::cluster_h3::ClusterClient,
    runtime: tokio::runtime::Handle,
    pub(crate) metrics: Metrics,
    /// MCU subscriptions: mixers and composers.
    pub(crate) mcu: crate::mcu::Mcu,
    /// The data centre's members, when placement is on.
    pub membership: Option<Arc<Membership>>,
    pub handover: Handover,
    pub capacity: Capacity,
    /// Incoming media bit rate over the last second, for the bit-rate capacity.
    ingress_bps: AtomicU64,
    /// Resource state changes, for the event streams of `GET {resource}/events`.
    events: tokio::sync::broadcast::Sender<ResourceEvent>,
    /// Room events, for `GET /rtc/v1/rooms/{room}/events`.
    room_events: tokio::sync::broadcast::Sender<RoomEvent>,
    /// Remote publications whose relay must be asked for again.
    reopen: tokio::sync::mpsc::UnboundedSender<String>,
    /// Relays being opened, by origin resource URL: concurrent first subscribers of a
    /// remote publication wait for one open instead of each opening a relay.
    relay_opens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Timeouts and caps of the HTTP side.
    pub http_limits: HttpLimits,
    /// Open event streams (`.../events`), in total and per client address.
    pub event_streams: OpenCap,
    /// Graceful drain (SIGTERM, `POST /admin/drain`).
    pub drain: crate::drain::Drain,
}

/// Held while this server opens the relay of one remote publication; see
/// [`AppState::opening_relay`].
pub struct RelayOpening<'a> {
    state: &'a AppState,
    url: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for RelayOpening<'_> {
    fn drop(&mut self) {
        let mut opens = self
            .state
            .relay_opens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only the map and this holder know the lock: nobody else waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            opens.remove(&self.url);
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("dataplane", &self.dataplane)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Runs `f` on the SFU core, then carries out what it asked for.
    pub fn with_sfu<R>(&self, f: impl FnOnce(&mut Sfu) -> R) -> R {
        let mut sfu = self.sfu.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut sfu);
        self.pump(&mut sfu);
        r
    }

    fn pump(&self, sfu: &mut Sfu) {
        while let Some(o) = sfu.poll_output() {
            match o {
                SfuOutput::Command(c) => {
                    if let Some(k) = &self.kernel {
                        let outcome = k.lock().unwrap_or_else(|p| p.into_inner()).apply(&c);
                        if let Some(outcome) = outcome {
                            sfu.handle_kernel_outcome(Instant::now(), &c, outcome);
                        }
                    }
                    self.dataplane.command(c);
                }
                SfuOutput::Transmit { dest, data } => self.dataplane.send_control(&data, dest),
                SfuOutput::Event(e) => {
                    // No receiver (nobody watching) is not an error.
                    let _ = self.events.send(e);
                }
                SfuOutput::Room(e) => {
                    let _ = self.room_events.send(e);
                }
                SfuOutput::ReopenRelay { url } => {
                    let _ = self.reopen.send(url);
                }
                SfuOutput::CloseRelay { relay } => {
                    let Some(token) = self.cluster_token() else {
                        continue;
                    };
                    let cluster = self.cluster.clone();
                    self.runtime.spawn(async move {
                        let call = Call::new(http::Method::DELETE, &relay, &token);
                        match cluster.send("relay_close", call).await {
                            Ok(a) if (200..300).contains(&a.status) || a.status == 404 => {}
                            Ok(a) => {
                                tracing::warn!(%relay, status = a.status, "closing relay refused")
                            }
                            Err(e) => tracing::warn!(%relay, error = %e, "closing relay failed"),
                        }
                    });
                }
            }
        }
    }

    /// Waits until no other request of this server is opening the relay of remote
    /// publication `url`; the open this caller then makes (or finds made) is the only
    /// one until the returned guard drops.
    pub async fn opening_relay(
        &self,
        url: &str,
    ) -> (RelayOpening<'_>, tokio::sync::OwnedMutexGuard<()>) {
        let lock = self
            .relay_opens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_owned())
            .or_default()
            .clone();
        let held = lock.clone().lock_owned().await;
        (
            RelayOpening {
                state: self,
                url: url.to_owned(),
                lock,
            },
            held,
        )
    }

    /// Whether this server is at any of its capacity limits (its own load only).
    pub fn is_full(&self) -> bool {
        if self.drain.is_draining() {
            // A draining server takes no new room: they spill to the next member.
            return true;
        }
        let c = self.capacity;
        if c == Capacity::default() {
            return false;
        }
        let (sessions, tracks) = self.with_sfu(|s| (s.session_count(), s.track_count()));
        c.max_sessions.is_some_and(|m| sessions >= m)
            || c.max_tracks.is_some_and(|m| tracks >= m)
            || c.max_bitrate
                .is_some_and(|m| self.ingress_bps.load(Ordering::Relaxed) >= m)
    }

    /// Refuses a new session while incoming media is at the bit-rate capacity (the
    /// core checks the session and track caps; the bit rate is measured here).
    pub fn check_bitrate(&self) -> Result<(), ApiError> {
        match self.capacity.max_bitrate {
            Some(max) if self.ingress_bps.load(Ordering::Relaxed) >= max => Err(ApiError::new(
                ErrorKind::Unavailable,
                "server_full",
                format!("this server receives its maximum of {max} bit/s"),
            )),
            _ => Ok(()),
        }
    }

    /// Resource state changes from now on.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<ResourceEvent> {
        self.events.subscribe()
    }

    /// Room events from now on.
    pub fn subscribe_room_events(&self) -> tokio::sync::broadcast::Receiver<RoomEvent> {
        self.room_events.subscribe()
    }

    /// A fresh cluster service token, when a cluster secret is configured.
    pub fn cluster_token(&self) -> Option<String> {
        let secret = self.cluster_secret.as_ref()?;
        cascade_core::token::mint_cluster(secret, &self.server_name, unix_now(), 60).ok()
    }

    /// Asks the origin of `url` (a publication resource URL on another server) to
    /// relay it here.
    pub async fn open_remote_relay(&self, url: &str) -> Result<RelayAnswer, ApiError> {
        let token = self.cluster_token().ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                "unknown_resource",
                format!("{url} is on another server and this server has no cluster secret"),
            )
        })?;
        let unreachable = |e: String| {
            ApiError::new(
                ErrorKind::BadGateway,
                "origin_unreachable",
                format!("relay from {url}: {e}"),
            )
        };
        let relay_url = format!("{url}/relay");
        let request = serde_json::json!({ "relay_addr": self.relay_addr });
        let answer = self
            .cluster
            .send(
                "relay_open",
                Call::new(http::Method::POST, &relay_url, &token).json(&request),
            )
            .await
            .map_err(unreachable)?;
        let (status, body) = (answer.status, answer.body);
        match status {
            201 => {
                serde_json::from_slice::<RelayAnswer>(&body).map_err(|e| unreachable(e.to_string()))
            }
            404 => Err(ApiError::unknown_resource(url)),
            s => Err(unreachable(format!(
                "origin answered {s}: {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    pub fn render_metrics(&self) -> String {
        let core = self.with_sfu(|s| CoreGauges {
            sessions: s.session_count(),
            publications: s.publication_count(),
            subscriptions: s.subscription_count(),
            relays: s.relay_count(),
        });
        if let Some(listed) = self.membership.as_ref().and_then(|m| m.lists_self()) {
            self.metrics.set_self_member(listed);
        }
        let kernel = self.kernel.as_ref().map_or_else(Vec::new, |k| {
            k.lock().unwrap_or_else(|p| p.into_inner()).counters()
        });
        self.metrics.render(core, self.dataplane.stats(), &kernel)
    }
}

/// What `serve` prints once it is ready: where it listens, and the demo page. A dev
/// token (and a demo link carrying it) only when the token secret was generated for
/// this run: a token signed with an operator's secret never goes to a log.
fn announce(
    http: SocketAddr,
    tls: bool,
    media: SocketAddr,
    public_url: &str,
    dev_token: Option<&str>,
) {
    let scheme = if tls { "https" } else { "http" };
    println!("cascade listening: http={scheme}://{http} media=udp://{media}");
    match dev_token {
        Some(token) => {
            println!("demo page: {public_url}/?room=demo&token={token}");
            println!("dev token: {token}");
        }
        None => println!("demo page: {public_url}/?room=demo (mint a token with `cascade token`)"),
    }
    if dev_token.is_some() {
        println!("call demo: {public_url}/call (open it in two tabs, call the other tab's name)");
        println!("meeting demo: {public_url}/meeting?room=demo");
    }
}

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let generated_secret = config.token_secrets.is_empty();
    let secrets: Vec<TokenSecret> = if generated_secret {
        let bytes: [u8; 24] = rand::rng().random();
        let secret = hex::encode(bytes);
        tracing::warn!("no --token-secret given: generated a dev secret for this run only");
        vec![TokenSecret::parse(&secret)]
    } else {
        config
            .token_secrets
            .iter()
            .map(|s| TokenSecret::parse(s.expose()))
            .collect()
    };
    // `secrets` is non-empty by construction just above.
    let verifier = TokenVerifier::new(&secrets)
        .context("no token secret")?
        .with_max_lifetime(config.token_max_lifetime);

    let cert = DtlsCertificate::generate(unix_now()).context("generating the DTLS certificate")?;
    let backend = match config.dataplane {
        DataplaneArg::Auto => BackendChoice::Auto,
        DataplaneArg::Userspace => BackendChoice::Userspace,
        DataplaneArg::Uring => BackendChoice::IoUring,
    };
    let (dataplane, upcalls) = Dataplane::start(&DataplaneConfig {
        listen: config.media_listen,
        workers: config.workers,
        backend,
        upcall_budget: config.upcall_budget,
    })?;
    let media = dataplane.local_addr();
    let kernel = crate::kernel::start(config.ebpf, config.media_interface.as_deref(), &dataplane)?
        .map(Mutex::new);
    let candidate_ip = config.public_ip.unwrap_or(media.ip());
    anyhow::ensure!(
        !candidate_ip.is_unspecified(),
        "--media-listen {} binds every address: give --public-ip for the ICE candidate",
        config.media_listen
    );
    let candidate = SocketAddr::new(candidate_ip, media.port());

    let file_tls = match &config.tls {
        Some((cert, key)) => Some(crate::cluster_tls::server_config(cert, key)?),
        None => None,
    };
    let wants_quic = config.http3.is_some() && (file_tls.is_some() || config.tls_dev);
    // Both bound before the server announces itself, so a client that reads the
    // announcement finds HTTP/3 up too.
    let (listener, udp) = crate::listener::bind(config.http_listen, wants_quic).await?;
    let http = listener.local_addr()?;
    let tls = match file_tls {
        Some(tls) => Some(tls),
        None if config.tls_dev => Some(crate::dev_cert::for_server(
            http,
            candidate_ip,
            config.public_url.as_deref(),
        )?),
        None => None,
    };
    let quic = match (udp, &tls) {
        (Some(udp), Some(tls)) => {
            let endpoint = crate::http3::endpoint(udp, tls, &config.http_limits)?;
            println!("http3 listening: udp://{}", endpoint.local_addr()?);
            Some(endpoint)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{http}"));
    let trust = crate::cluster_tls::ClusterTrust::load(
        &config.cluster_ca,
        &config.cluster_pins,
        config.cluster_insecure_http,
    )?;

    let mut sfu = Sfu::new(
        cert,
        candidate,
        public_url.clone(),
        Instant::now(),
        StdRng::from_os_rng(),
    );
    if kernel.is_some() {
        sfu.enable_kernel_fanout();
    }
    sfu.set_limits(SessionLimits {
        max_sessions: config.capacity.max_sessions,
        max_tracks: config.capacity.max_tracks,
        per_subject: config.session_caps.per_subject,
        per_source: config.session_caps.per_ip,
    });
    let (reopen, mut reopen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let metrics = Metrics::new()?;
    // The MCU's threads feed the data plane over this host's own addresses: the
    // media socket's, or loopback when it binds every address.
    let mcu_media = if media.ip().is_unspecified() {
        let lo: std::net::IpAddr = if media.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(lo, media.port())
    } else {
        media
    };
    let mcu = crate::mcu::Mcu::new(mcu_media, metrics.registry())?;
    let state = Arc::new(AppState {
        sfu: Mutex::new(sfu),
        dataplane,
        kernel,
        verifier,
        cluster_secret: config
            .cluster_secret
            .as_ref()
            .map(|s| TokenSecret::parse(s.expose())),
        cluster_insecure_http: config.cluster_insecure_http,
        tls: tls.is_some(),
        server_name: public_url.clone(),
        relay_addr: candidate,
        cluster: crate::cluster_h3::ClusterClient {
            tcp: trust.client()?,
            h3: match trust
                .quic_client_config()
                .and_then(crate::cluster_h3::ClusterH3::new)
            {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "calls to other servers go over TCP only");
                    None
                }
            },
            requests: metrics.cluster_requests.clone(),
        },
        runtime: tokio::runtime::Handle::current(),
        metrics,
        mcu,
        events: tokio::sync::broadcast::channel(1024).0,
        room_events: tokio::sync::broadcast::channel(1024).0,
        reopen,
        relay_opens: Mutex::new(HashMap::new()),
        membership: match config.members.clone() {
            Some(source) => Some(Membership::start(source).await),
            None => None,
        },
        handover: config.handover,
        capacity: config.capacity,
        ingress_bps: AtomicU64::new(0),
        http_limits: config.http_limits,
        event_streams: OpenCap::new(
            config.http_limits.max_event_streams,
            config.http_limits.max_event_streams_per_ip,
        ),
        drain: crate::drain::Drain::new(config.drain_deadline, config.admin_secret.as_ref()),
    });
    if let Some(m) = &state.membership {
        m.identify(&public_url);
        state.metrics.track_self_member();
        let ids: Vec<String> = m.members().iter().map(|m| m.id.clone()).collect();
        tracing::info!(members = ?ids, me = %public_url, handover = ?config.handover, "room placement on");
    }
    if config.capacity.max_bitrate.is_some() {
        // The bit-rate capacity looks at the last second's incoming media.
        let weak = Arc::downgrade(&state);
        tokio::spawn(async move {
            let mut last = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else {
                    return;
                };
                let bytes = state.dataplane.stats().bytes_in;
                if let Some(prev) = last {
                    let bps = bytes.saturating_sub(prev) * 8;
                    state.ingress_bps.store(bps, Ordering::Relaxed);
                }
                last = Some(bytes);
            }
        });
    }

    // Keeps the MCU's rooms in line with the SFU.
    let mcu_state = Arc::downgrade(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::mcu::REFRESH_EVERY);
        loop {
            tick.tick().await;
            let Some(state) = mcu_state.upgrade() else {
                return;
            };
            state.with_sfu(|sfu| state.mcu.refresh(sfu, Instant::now()));
        }
    });

    // Re-opens relays of lost origins, each in its own task (a slow origin delays
    // no other).
    let reopen_state = Arc::downgrade(&state);
    tokio::spawn(async move {
        while let Some(url) = reopen_rx.recv().await {
            let Some(state) = reopen_state.upgrade() else {
                return;
            };
            tokio::spawn(async move {
                let result = state.open_remote_relay(&url).await;
                state.with_sfu(|s| s.relay_reopened(Instant::now(), &url, result));
            });
        }
    });

    let media_state = state.clone();
    let media_thread = std::thread::Builder::new()
        .name("cascade-control".into())
        .spawn(move || {
            loop {
                let wait = media_state
                    .with_sfu(|s| s.poll_timeout())
                    .map_or(MAX_IDLE, |t| t.saturating_duration_since(Instant::now()))
                    .min(MAX_IDLE);
                match upcalls.recv_timeout(wait) {
                    Ok(Upcall::Datagram { from, data }) => {
                        media_state.with_sfu(|s| s.handle_datagram(Instant::now(), from, &data));
                    }
                    Ok(Upcall::Media(e)) => {
                        // Take what else is queued under the same lock.
                        media_state.with_sfu(|s| {
                            let now = Instant::now();
                            s.handle_media_event(now, e);
                            for _ in 0..256 {
                                match upcalls.try_recv() {
                                    Ok(Upcall::Media(e)) => s.handle_media_event(now, e),
                                    Ok(Upcall::Datagram { from, data }) => {
                                        s.handle_datagram(now, from, &data);
                                    }
                                    Err(_) => break,
                                }
                            }
                        });
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
                media_state.with_sfu(|s| s.handle_timeout(Instant::now()));
            }
        })?;

    let dev_token = if generated_secret {
        let now = unix_now();
        Some(mint(
            &secrets[0],
            &Claims {
                sub: "dev".into(),
                room: "demo".into(),
                grants: vec![Grant::Publish, Grant::Subscribe],
                exp: now + 24 * 3600,
                iat: now,
            },
        )?)
    } else {
        None
    };
    let stop_signals = crate::drain::StopSignals::install();
    announce(
        http,
        tls.is_some(),
        media,
        &public_url,
        dev_token.as_deref(),
    );
    crate::readiness::notify_ready();

    let (signal, in_process_signal) =
        crate::demo::start_signal(&config, &secrets, generated_secret).await?;
    let (signal_router, in_process_signal) = in_process_signal.unzip();
    let mut router = crate::api::router(state.clone()).merge(crate::demo::router(Arc::new(
        crate::demo::DemoState {
            signal,
            dev_secret: generated_secret.then(|| secrets[0].clone()),
            tls: tls.is_some(),
        },
    )));
    if let Some(signal_router) = signal_router {
        router = router.nest("/signal", signal_router);
    }
    let tls = tls.map(Arc::new);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let counters = ListenerCounters {
        open: state.metrics.http_connections.clone(),
        refused: state.metrics.refused.clone(),
    };
    // One cap for both: a client's TCP and QUIC connections count together.
    let connections = OpenCap::new(
        config.http_limits.max_connections,
        config.http_limits.max_connections_per_ip,
    );
    let http3 = quic.map(|endpoint| {
        let options = config.http3.unwrap_or_default();
        tokio::spawn(crate::http3::serve(
            endpoint,
            router.clone(),
            connections.clone(),
            config.http_limits,
            options,
            crate::http3::Http3Counters {
                listener: counters.clone(),
                retries: state.metrics.http3_retries.clone(),
            },
            stopped(),
        ))
    });
    let tcp_router = match http3 {
        Some(_) => crate::http3::advertise(router, http.port()),
        None => router,
    };
    {
        let state = state.clone();
        tokio::spawn(async move {
            crate::drain::until_stopped(state, stop_signals).await;
            let _ = stop_tx.send(true);
        });
    }
    crate::listener::serve(
        listener,
        tls,
        tcp_router,
        connections,
        config.http_limits,
        counters,
        stopped(),
    )
    .await;
    if let Some(h3) = http3 {
        let _ = h3.await;
    }
    tracing::info!("shutting down");
    if let Some(s) = in_process_signal {
        s.shutdown().await;
    }
    state.dataplane.shutdown();
    let _ = media_thread.join();
    Ok(())
}
