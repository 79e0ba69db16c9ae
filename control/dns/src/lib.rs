//! `cascade dns`: the Smart DNS and HTTPDNS service that sends each client to its
//! nearest healthy media servers.
//!
//! ## Smart DNS and HTTPDNS (`cascade dns`)
//!
//! Adding a media server is adding one `[[server]]` entry to the zone file: `cascade
//! dns` reloads the file when it changes (checked every second; a file that does not
//! parse is logged and the last good zone stays in force) and starts answering with
//! the new server, no restart. It is an authoritative server for one zone (say
//! `media.example.test`), built on hickory-server, plus an HTTP endpoint with the same
//! answers.
//!
//! ```sh
//! cascade dns --zone media.toml --listen 0.0.0.0:53 --http-listen 0.0.0.0:8053
//! # cascade dns listening: dns=udp://0.0.0.0:53 http=http://0.0.0.0:8053
//! ```
//!
//! | flag | default | |
//! |---|---|---|
//! | `--zone FILE` | (required) | the zone file below |
//! | `--listen ADDR` | `127.0.0.1:5353` | DNS over UDP and TCP, same port |
//! | `--http-listen ADDR` | `127.0.0.1:8053` | HTTPDNS |
//! | `--probe-interval DURATION` | `2s` | health probes (`500ms`, `2s`, `1m`) |
//!
//! Port `0` picks a free port; the `cascade dns listening:` line, printed once the
//! zone is loaded and the first health probes are done, says which.
//!
//! The zone file (TOML):
//!
//! ```toml
//! zone = "media.example.test"
//! ttl = 30                        # every record's TTL, seconds (default 30)
//! answers = 2                     # A/AAAA records per answer (default 2)
//! # srv_name = "_cascade._tcp"    # default; relative to the zone
//! # nameservers = ["ns1.example.test"]   # NS records at the zone name
//! # default_region = "eu"         # region of clients no [regions] entry matches
//!
//! [[server]]
//! name = "m1"                     # answers also for m1.media.example.test
//! address = "10.1.0.1"            # IPv4 (A) or IPv6 (AAAA)
//! region = "eu"
//! port = 443                      # SRV port: the server's HTTPS API (default 443)
//! health_url = "http://10.1.0.1:8080/healthz"   # optional, plain HTTP
//!
//! [[server]]
//! name = "m3"
//! address = "10.2.0.1"
//! region = "us"
//!
//! [regions]                       # client CIDR -> region, longest prefix wins
//! "10.1.0.0/16" = "eu"
//! "10.2.0.0/16" = "us"
//!
//! [latency]                       # region-to-region round trip in ms (symmetric)
//! eu.us = 90
//! ```
//!
//! What it answers:
//!
//! - **`A`/`AAAA` for the zone name**: the `answers` best healthy servers for the
//!   client. The client is the EDNS Client Subnet of the query (RFC 7871) when there
//!   is one, else the resolver's address; `[regions]` gives its region. Servers are
//!   ordered by latency from that region (its own region first at 0 ms, then the
//!   `[latency]` matrix, regions it does not list last); equally near servers are
//!   ordered by rendezvous hashing of the client's /24 (/56 for IPv6), so clients
//!   spread over them and each /24 keeps its order. A query with ECS gets the option
//!   back with its scope set to the prefix the answer depends on: the longer of the
//!   matched `[regions]` prefix and the spreading prefix (the /24, or the query's
//!   source prefix when that is shorter).
//! - **`SRV _cascade._tcp.<zone>`** (`srv_name`): every healthy server, target
//!   `<name>.<zone>` and `port`, with their addresses in the additional section. Media
//!   servers of a data centre read their membership from it (`placement::Membership`)
//!   and place rooms by rendezvous hashing over it.
//! - **`A`/`AAAA` for `<name>.<zone>`**: that server's address, healthy or not.
//! - **`HTTPS` (RFC 9460)** for the zone name (one record per ranked server, target
//!   `<name>.<zone>`) and for `<name>.<zone>` (target `.`): `alpn="h3,h2"`, the port
//!   and an address hint ([`svcb`]).
//! - `SOA` (and `NS` when `nameservers` is set) at the zone name; NXDOMAIN with the SOA
//!   for other names in the zone, REFUSED for names outside it.
//!
//! **Health**: every `--probe-interval`, each `health_url` gets a `GET` (timeout 1 s,
//! or the interval when shorter). A server whose probe fails (no 2xx, timeout,
//! refused) leaves the answers at once, so within two probe intervals of failing, and
//! comes back after its next successful probe; a new server with a `health_url`
//! appears after its first successful probe. Servers without `health_url` are always
//! healthy. When every server of a kind is unhealthy the answer lists them all anyway
//! (fail open).
//!
//! **HTTPDNS**, with the very same ranking (one function serves both):
//!
//! ```sh
//! curl -s 'http://127.0.0.1:8053/resolve?name=media.example.test&ip=10.1.2.3'
//! # {"name":"media.example.test","client_ip":"10.1.2.3","region":"eu","ttl":30,
//! #  "answers":[{"address":"10.1.0.1","name":"m1.media.example.test","region":"eu",
//! #              "latency_ms":0}, ...]}
//! ```
//!
//! `ip` defaults to the caller's address and `name` to the zone name; the answers mix
//! IPv4 and IPv6 servers in ranking order. An unknown name is a 404
//! `{"code":"unknown_name",...}`, a bad `ip` a 400 `{"code":"bad_ip",...}`.
//! `GET /servers` lists every server with its health; `GET /healthz` says `ok`.
//!
//! ```sh
//! dig @127.0.0.1 -p 5353 media.example.test A +subnet=10.1.2.0/24
//! dig @127.0.0.1 -p 5353 _cascade._tcp.media.example.test SRV
//! ```

pub mod health;
pub mod http;
pub mod membership;
pub mod rank;
pub mod server;
pub mod svcb;
pub mod zone;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::health::Health;
use self::zone::Zone;

/// How often the zone file is checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);
/// Default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default `--http-listen`.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8053";
/// Idle time after which a DNS-over-TCP connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// `cascade dns` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsArgs {
    /// Zone file (TOML): servers, client regions, latency matrix, TTL.
    #[arg(long)]
    pub zone: PathBuf,
    /// DNS address, UDP and TCP on the same port (port 0 picks one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// HTTPDNS address (`GET /resolve?name=NAME&ip=CLIENT_IP`).
    #[arg(long, default_value = DEFAULT_HTTP_LISTEN)]
    pub http_listen: SocketAddr,
    /// Interval of the health probes, e.g. `500ms`, `2s`, `1m`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// CA (PEM) that `https` health URLs' certificates must chain to, e.g. the
    /// cluster CA; repeatable. Without it only plain `http` health URLs work.
    #[arg(
        long = "health-ca",
        env = "CASCADE_DNS_HEALTH_CA",
        value_delimiter = ','
    )]
    pub health_ca: Vec<PathBuf>,
}

/// Parses `300ms`, `2s`, `1.5s`, `1m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    if !secs.is_finite() || !(0.01..=3600.0).contains(&secs) {
        return Err(format!("{s:?} is out of range (10ms to 1h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What `cascade dns` runs with.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub zone_path: PathBuf,
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub probe_interval: Duration,
    /// CA files of `https` health URLs.
    pub health_ca: Vec<PathBuf>,
}

impl From<DnsArgs> for DnsConfig {
    fn from(a: DnsArgs) -> Self {
        DnsConfig {
            zone_path: a.zone,
            listen: a.listen,
            http_listen: a.http_listen,
            probe_interval: a.probe_interval,
            health_ca: a.health_ca,
        }
    }
}

/// The live zone and health table, shared by the DNS handler, HTTPDNS, the prober
/// and the zone watcher.
#[derive(Debug)]
pub struct DnsState {
    zone: RwLock<Arc<Zone>>,
    pub health: Health,
    zone_changed: Arc<Notify>,
}

impl DnsState {
    pub fn new(zone: Zone) -> Self {
        DnsState {
            zone: RwLock::new(Arc::new(zone)),
            health: Health::default(),
            zone_changed: Arc::new(Notify::new()),
        }
    }

    /// The zone in force.
    pub fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `zone` in force (with a higher SOA serial) and wakes the prober.
    pub fn install(&self, mut zone: Zone) {
        {
            let mut cur = self.zone.write().unwrap_or_else(|p| p.into_inner());
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(0);
            zone.serial = cur.serial.wrapping_add(1).max(now);
            *cur = Arc::new(zone);
        }
        self.zone_changed.notify_one();
    }
}

/// A running `cascade dns`; everything stops when it is dropped.
pub struct RunningDns {
    /// The DNS address (UDP and TCP).
    pub dns_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub state: Arc<DnsState>,
    server: Option<hickory_server::Server<server::Handler>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDns")
            .field("dns_addr", &self.dns_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl RunningDns {
    /// Stops answering and waits for the DNS listeners to close.
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(mut server) = self.server.take()
            && let Err(e) = server.shutdown_gracefully().await
        {
            tracing::debug!("DNS server shutdown: {e}");
        }
    }
}

impl Drop for RunningDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A file's identity for change detection: modification time, length and inode.
type Fingerprint = Option<(SystemTime, u64, u64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Checks the zone file every [`RELOAD_POLL`] and installs it when it changed and
/// parses; a bad file is logged once and the last good zone stays.
async fn watch_zone(state: Weak<DnsState>, path: PathBuf, mut last: Fingerprint) {
    loop {
        tokio::time::sleep(RELOAD_POLL).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let now = fingerprint(&path);
        if now == last {
            continue;
        }
        last = now;
        match Zone::load(&path) {
            Ok(zone) => {
                let n = zone.servers.len();
                state.install(zone);
                tracing::info!(zone = %path.display(), servers = n, "zone reloaded");
            }
            Err(e) => {
                tracing::error!("zone reload failed, keeping the last good zone: {e:#}");
            }
        }
    }
}

/// Binds UDP and TCP on the same address; with port 0, on the same free port.
fn bind_dns(listen: SocketAddr) -> anyhow::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind(listen)
            .with_context(|| format!("cannot bind DNS UDP {listen}"))?;
        let addr = udp.local_addr()?;
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind DNS TCP {addr}")),
        }
    }
    bail!("no port free for both UDP and TCP on {}", listen.ip())
}

/// Loads the zone, binds every listener, runs the first health probes and starts
/// serving. Needs a Tokio runtime.
pub async fn start(config: DnsConfig) -> anyhow::Result<RunningDns> {
    let zone = Zone::load(&config.zone_path)?;
    let first_print = fingerprint(&config.zone_path);
    tracing::info!(
        zone = %zone.origin_str(),
        servers = zone.servers.len(),
        "zone loaded from {}",
        config.zone_path.display()
    );
    let state = Arc::new(DnsState::new(zone));

    let (udp, tcp) = bind_dns(config.listen)?;
    let dns_addr = udp.local_addr()?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let udp = tokio::net::UdpSocket::from_std(udp)?;
    let tcp = tokio::net::TcpListener::from_std(tcp)?;

    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot bind HTTPDNS {}", config.http_listen))?;
    let http_addr = http.local_addr()?;

    // First probes before answering, so that no answer names a server known down.
    let probe_client = health::client(
        health::PROBE_TIMEOUT.min(config.probe_interval),
        &config.health_ca,
    )?;
    health::probe_round(&state, &probe_client).await;

    let mut server = hickory_server::Server::new(server::Handler {
        state: state.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 64);

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(health::prober(
        Arc::downgrade(&state),
        config.probe_interval,
        probe_client,
    )));
    tasks.push(tokio::spawn(watch_zone(
        Arc::downgrade(&state),
        config.zone_path.clone(),
        first_print,
    )));
    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).await {
            tracing::error!("HTTPDNS server stopped: {e}");
        }
    }));

    Ok(RunningDns {
        dns_addr,
        http_addr,
        state,
        server: Some(server),
        tasks,
    })
}

/// The log filter `cascade dns` runs with when `RUST_LOG` is not set.
pub const DEFAULT_LOG_FILTER: &str = "info,hickory_server=warn";

#[cfg(test)]
mod tests;
