//! `cascade signal`: the reference signalling service, an IM channel that never
//! loses a message. Clients speak JSON over a WebSocket (`GET /v1/connect`),
//! application backends post messages over HTTP (`POST /v1/messages`); both are
//! authenticated with the same JWTs as the media servers. It knows nothing about
//! media servers.
//!
//! Every message goes to per-user inboxes with a per-user sequence (1, 2, 3, ...
//! with no gaps) in a redb file ([`store`]); a sender is told `accepted` only after
//! the commit, a retry with the same client message id stores nothing new, a client
//! acknowledges what it processed and resumes after it. The protocol (frames, error
//! and close codes) is in [`protocol`] and in the README section "Signalling
//! (`cascade signal`)".

pub mod cli;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod server;
pub mod store;

mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cascade_core::token::{TokenSecret, TokenVerifier};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::server::AppState;
pub use crate::server::Limits;
use crate::store::{Store, StoreLocation, WriterDone};

/// Default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// Default `--store`, relative to the working directory.
pub const DEFAULT_STORE: &str = "cascade-signal.redb";
/// How often acknowledged and expired inbox entries are removed.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// `cascade signal` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SignalArgs {
    /// HTTP and WebSocket address (port 0 picks one).
    #[arg(long, env = "CASCADE_SIGNAL_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where messages are kept: a redb file (created when missing), or a Redis
    /// server shared by several nodes, `redis://host:port[/db]`.
    #[arg(long, env = "CASCADE_SIGNAL_STORE", default_value = DEFAULT_STORE, value_parser = parse_store)]
    pub store: StoreLocation,
    /// Secret of the clients' tokens, `SECRET` or `KID:SECRET`; repeat (or
    /// comma-separate) for rotation. The first is used for tokens without a key id.
    #[arg(
        long = "token-secret",
        env = "CASCADE_TOKEN_SECRET",
        value_delimiter = ',',
        required = true
    )]
    pub token_secrets: Vec<String>,
    /// Secret of the service tokens of application backends (`POST /v1/messages`);
    /// the endpoint is off without it.
    #[arg(long, env = "CASCADE_SIGNAL_SERVICE_SECRET")]
    pub service_secret: Option<String>,
    /// How long unacknowledged messages and idempotency keys are kept, e.g. `7d`, `12h`.
    #[arg(long, default_value = "7d", value_parser = parse_retention)]
    pub retention: Duration,
    /// Largest text frame (and backend request body), in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Frames per second per connection (token bucket), with a burst of as many frames.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
}

fn parse_store(s: &str) -> Result<StoreLocation, String> {
    Ok(StoreLocation::parse(s))
}

/// Parses `7d`, `12h`, `30m`, `90s` or a plain number of seconds.
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 7d, 12h, 30m, 90s)"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h or d)")),
    };
    n.checked_mul(unit_secs)
        .filter(|&secs| secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// What `cascade signal` runs with.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    pub token_secrets: Vec<TokenSecret>,
    pub service_secret: Option<TokenSecret>,
    pub retention: Duration,
    pub limits: Limits,
}

impl From<SignalArgs> for SignalConfig {
    fn from(a: SignalArgs) -> Self {
        let rate = a.rate.max(1.0);
        SignalConfig {
            listen: a.listen,
            store: a.store,
            token_secrets: a
                .token_secrets
                .iter()
                .map(|s| TokenSecret::parse(s))
                .collect(),
            service_secret: a.service_secret.as_deref().map(TokenSecret::parse),
            retention: a.retention,
            limits: Limits {
                max_message_bytes: a.max_message_bytes,
                rate,
                burst: rate,
                ..Limits::default()
            },
        }
    }
}

/// A running `cascade signal`; [`RunningSignal::shutdown`] stops it and releases
/// the store file.
#[derive(Debug)]
pub struct RunningSignal {
    /// The bound HTTP and WebSocket address.
    pub addr: SocketAddr,
    http: JoinHandle<()>,
    service: SignalService,
}

impl RunningSignal {
    /// Closes every connection with 1001, stops serving, waits for the last commit
    /// and closes the store.
    pub async fn shutdown(mut self) {
        let _ = self.service.shutdown.send(true);
        let _ = (&mut self.http).await;
        self.service.shutdown().await;
    }
}

/// The service behind a router from [`launch`]: the store's writer, the trim task,
/// presence across nodes, and the connections' shutdown signal.
#[derive(Debug)]
pub struct SignalService {
    shutdown: watch::Sender<bool>,
    alive: mpsc::Receiver<()>,
    trim: JoinHandle<()>,
    /// Presence across nodes (Redis engine only).
    cluster: Vec<JoinHandle<()>>,
    writer: WriterDone,
}

impl SignalService {
    /// Closes every connection with 1001, waits for the last commit and closes the
    /// store.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.trim.abort();
        let _ = (&mut self.trim).await;
        for task in self.cluster.drain(..) {
            task.abort();
            let _ = task.await;
        }
        // Every connection holds a sender: `None` once the last one ended.
        while self.alive.recv().await.is_some() {}
        self.writer.wait().await;
    }
}

impl Drop for SignalService {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.trim.abort();
        for task in &self.cluster {
            task.abort();
        }
    }
}

/// Opens the store, binds the listener and starts serving. Needs a Tokio runtime.
pub async fn start(config: SignalConfig) -> anyhow::Result<RunningSignal> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot bind {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (app, service) = launch(config).await?;
    let mut stop = service.shutdown.subscribe();
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!("signal HTTP server stopped: {e}");
        }
    });
    Ok(RunningSignal {
        addr,
        http,
        service,
    })
}

/// Opens the store and starts the service without a listener of its own: the router
/// (`/v1/connect`, `/v1/messages`, `/health`, `/metrics`) is for the caller to serve,
/// as `cascade serve` does under `/signal` for development. `config.listen` is not
/// used. Needs a Tokio runtime.
pub async fn launch(config: SignalConfig) -> anyhow::Result<(axum::Router, SignalService)> {
    let verifier = TokenVerifier::new(&config.token_secrets).context("no token secret")?;
    let retention_ms = u64::try_from(config.retention.as_millis()).unwrap_or(u64::MAX);
    let (store, writer) = Store::open(&config.store, retention_ms)
        .await
        .with_context(|| format!("cannot open the store {}", config.store))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel(1);
    let mut cluster_tasks = Vec::new();
    let (presence, cluster) = match store.redis() {
        Some(redis) => {
            let (cluster, changes) = presence::cluster::ClusterPresence::start(redis.connection());
            tracing::info!(node = cluster.node(), "presence shared through redis");
            (
                Arc::new(presence::Presence::new(Some(cluster))),
                Some((changes, redis.connection(), redis.client().clone())),
            )
        }
        None => (Arc::new(presence::Presence::new(None)), None),
    };
    let state = Arc::new(AppState {
        store: store.clone(),
        presence: presence.clone(),
        metrics: metrics::Metrics::new()?,
        verifier,
        service_secret: config.service_secret,
        limits: config.limits,
        shutdown: shutdown_rx.clone(),
        alive: alive_tx,
    });
    if let Some((changes, conn, client)) = cluster {
        let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<String>();
        let weak = Arc::downgrade(&presence);
        cluster_tasks.push(tokio::spawn(presence::cluster::run(
            weak.clone(),
            changes,
            conn,
            gone_tx,
        )));
        cluster_tasks.push(tokio::spawn(presence::cluster::deliver(client, weak)));
        let announcer = state.clone();
        cluster_tasks.push(tokio::spawn(async move {
            while let Some(user) = gone_rx.recv().await {
                if !announcer.presence.is_online(&user).await {
                    connection::announce(&announcer, &user, false).await;
                }
            }
        }));
    }
    let app = server::router(state);
    let trim = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_INTERVAL);
        loop {
            tick.tick().await;
            match store.trim(store::unix_ms()).await {
                Ok(r) if r.messages + r.idempotency_keys > 0 => {
                    tracing::info!(
                        messages = r.messages,
                        keys = r.idempotency_keys,
                        "store trimmed"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("store trim failed: {e}"),
            }
        }
    });
    Ok((
        app,
        SignalService {
            shutdown: shutdown_tx,
            alive: alive_rx,
            trim,
            cluster: cluster_tasks,
            writer,
        },
    ))
}

/// The log filter `cascade signal` runs with when `RUST_LOG` is not set.
pub const DEFAULT_LOG_FILTER: &str = "info";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_units() {
        assert_eq!(parse_retention("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_retention("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_retention("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_retention("90"), Ok(Duration::from_secs(90)));
        assert!(parse_retention("0s").is_err());
        assert!(parse_retention("1w").is_err());
        assert!(parse_retention("d").is_err());
    }
}
