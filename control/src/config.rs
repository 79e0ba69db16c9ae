//! Configuration of `cascade serve`: command-line flags, `CASCADE_*` environment
//! variables and an optional TOML file, in that order of precedence, over embedded
//! defaults that run a complete server on loopback with nothing set.

use cascade_core::placement::member_from_url;
use cascade_dataplane::budget::UpcallBudgetConfig;
use cascade_dns::membership::{MemberScheme, MembershipSource};
use cascade_signal::store::StoreLocation;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::limits::{HttpLimits, SessionCaps};

pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MEDIA_LISTEN: &str = "127.0.0.1:8443";

/// A secret from the command line, the environment or the config file (token and
/// cluster keys): its `Debug` form never shows the value, so a config printed with
/// `{:?}` leaks nothing.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext, for the one place that keys a verifier or signer with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A `KID:` prefix names the key without revealing it.
        match self.0.split_once(':') {
            Some((kid, _)) if !kid.is_empty() => write!(f, "Secret({kid}:<redacted>)"),
            _ => f.write_str("Secret(<redacted>)"),
        }
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// A feature switched on or off on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

/// Data-plane I/O backend, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneArg {
    #[default]
    Auto,
    Userspace,
    Uring,
}

/// Whether the eBPF fast path is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EbpfArg {
    /// When the kernel and permissions allow it; otherwise userspace, with one log line.
    #[default]
    Auto,
    /// Required: start fails when it cannot be attached.
    On,
    Off,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "CASCADE_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:8080].
    #[arg(long, env = "CASCADE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// The one UDP media port for every peer [default: 127.0.0.1:8443].
    #[arg(long, env = "CASCADE_MEDIA_LISTEN")]
    pub media_listen: Option<SocketAddr>,
    /// IP put in ICE candidates (needed when the media port binds 0.0.0.0 / ::).
    #[arg(long, env = "CASCADE_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Base of resource URLs, e.g. https://m1.example.com [default: http://<http-listen>].
    #[arg(long, env = "CASCADE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Token secret, `SECRET` or `KID:SECRET`; repeat (or comma-separate) for rotation.
    /// The first is used for tokens without a key id. Generated when absent.
    #[arg(
        long = "token-secret",
        env = "CASCADE_TOKEN_SECRET",
        value_delimiter = ','
    )]
    pub token_secrets: Vec<Secret>,
    /// Data-plane I/O backend.
    #[arg(long, env = "CASCADE_DATAPLANE", value_enum)]
    pub dataplane: Option<DataplaneArg>,
    /// Data-plane worker threads [default: one per core].
    #[arg(long, env = "CASCADE_WORKERS")]
    pub workers: Option<usize>,
    /// eBPF fast path (XDP guard, reuseport steering, TC cascade fan-out).
    #[arg(long, env = "CASCADE_EBPF", value_enum)]
    pub ebpf: Option<EbpfArg>,
    /// Interface the eBPF programs attach to [default: the one holding the media IP].
    #[arg(long, env = "CASCADE_MEDIA_INTERFACE")]
    pub media_interface: Option<String>,
    /// Key of cluster service tokens (server-to-server relay calls); relaying is off
    /// without it.
    #[arg(long, env = "CASCADE_CLUSTER_SECRET")]
    pub cluster_secret: Option<Secret>,
    /// Accept relay calls (which carry SRTP keys) over plain HTTP. For development
    /// only: without it the relay endpoint refuses to serve keys in clear.
    #[arg(long, env = "CASCADE_CLUSTER_INSECURE_HTTP")]
    pub cluster_insecure_http: bool,
    /// Serve the HTTP API over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "CASCADE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CASCADE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// HTTP/3 (QUIC) on the UDP port of the HTTPS port, with the same certificate
    /// [default: on with --tls-cert]. `on` without --tls-cert serves HTTPS and
    /// HTTP/3 with a self-signed development certificate made at start.
    #[arg(long, env = "CASCADE_HTTP3", value_enum)]
    pub http3: Option<OnOff>,
    /// QUIC handshakes in progress above which a new client must first prove its
    /// address with a Retry round trip; 0: always [default: 64].
    #[arg(long, env = "CASCADE_HTTP3_RETRY_ABOVE")]
    pub http3_retry_above: Option<usize>,
    /// Cluster CA (PEM) that other servers' certificates must chain to; repeatable.
    #[arg(long = "cluster-ca", env = "CASCADE_CLUSTER_CA", value_delimiter = ',')]
    pub cluster_ca: Vec<PathBuf>,
    /// SHA-256 of another server's DER certificate (hex, `:` allowed) to accept
    /// without a CA; repeatable.
    #[arg(
        long = "cluster-pin",
        env = "CASCADE_CLUSTER_PIN",
        value_delimiter = ','
    )]
    pub cluster_pins: Vec<String>,
    /// The data centre's media servers, as base URLs (this one among them): rooms
    /// are placed on them by rendezvous hashing. For development; see --members-srv.
    #[arg(
        long,
        env = "CASCADE_MEMBERS",
        value_delimiter = ',',
        conflicts_with = "members_srv"
    )]
    pub members: Vec<String>,
    /// SRV name listing the data centre's media servers (e.g.
    /// _cascade._tcp.dc1.example.com), re-resolved on its TTL.
    #[arg(long, env = "CASCADE_MEMBERS_SRV", requires = "members_dns")]
    pub members_srv: Option<String>,
    /// DNS server asked for --members-srv.
    #[arg(long, env = "CASCADE_MEMBERS_DNS")]
    pub members_dns: Option<SocketAddr>,
    /// Scheme of the member URLs built from SRV records, scheme://target[:port]
    /// (the port left out when it is the scheme's default). Default: the scheme of
    /// this server's own API (https with --tls-cert, else http).
    #[arg(long, env = "CASCADE_MEMBERS_SCHEME", value_enum)]
    pub members_scheme: Option<MemberScheme>,
    /// How a request for a room owned by another member is handed over.
    #[arg(long, env = "CASCADE_HANDOVER", value_enum)]
    pub handover: Option<Handover>,
    /// Capacity: most peer sessions; beyond it new ones spill to the next member
    /// (with placement off, or every member full: 503 `server_full`).
    #[arg(long, env = "CASCADE_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// Capacity: most media tracks (published plus delivered).
    #[arg(long, env = "CASCADE_MAX_TRACKS")]
    pub max_tracks: Option<usize>,
    /// Capacity: most incoming media bit rate, bits per second.
    #[arg(long, env = "CASCADE_MAX_BITRATE")]
    pub max_bitrate: Option<u64>,
    /// Most peer sessions one token subject (`sub`) may hold at once [default: no limit].
    #[arg(long, env = "CASCADE_MAX_SESSIONS_PER_SUBJECT")]
    pub max_sessions_per_subject: Option<usize>,
    /// Most peer sessions created from one client IP address [default: no limit].
    #[arg(long, env = "CASCADE_MAX_SESSIONS_PER_IP")]
    pub max_sessions_per_ip: Option<usize>,
    /// Longest lifetime (exp - iat) of an accepted access token, seconds [default: 86400].
    #[arg(long, env = "CASCADE_TOKEN_MAX_LIFETIME")]
    pub token_max_lifetime: Option<u64>,
    /// Seconds a client has to send a request's headers; also how long an idle
    /// HTTP/1 keep-alive connection and a TLS handshake may take [default: 10].
    #[arg(long, env = "CASCADE_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<u64>,
    /// Seconds a client has to send a whole request body [default: 20].
    #[arg(long, env = "CASCADE_HTTP_BODY_TIMEOUT")]
    pub http_body_timeout: Option<u64>,
    /// Seconds a connection with no request in progress stays open [default: 60].
    #[arg(long, env = "CASCADE_HTTP_IDLE_TIMEOUT")]
    pub http_idle_timeout: Option<u64>,
    /// Seconds a response may stay blocked on a client that reads nothing before the
    /// connection is closed [default: 30].
    #[arg(long, env = "CASCADE_HTTP_WRITE_TIMEOUT")]
    pub http_write_timeout: Option<u64>,
    /// Most open HTTP connections; beyond it new ones are closed at once [default: 4096].
    #[arg(long, env = "CASCADE_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Most open HTTP connections from one IP address [default: 256].
    #[arg(long, env = "CASCADE_HTTP_MAX_CONNECTIONS_PER_IP")]
    pub http_max_connections_per_ip: Option<usize>,
    /// Most open event streams (`.../events`, server-sent events) [default: 1024].
    #[arg(long, env = "CASCADE_MAX_EVENT_STREAMS")]
    pub max_event_streams: Option<usize>,
    /// Most open event streams from one IP address [default: 32].
    #[arg(long, env = "CASCADE_MAX_EVENT_STREAMS_PER_IP")]
    pub max_event_streams_per_ip: Option<usize>,
    /// Most `resource=` parameters in one subscribe [default: 32].
    #[arg(long, env = "CASCADE_MAX_SUBSCRIBE_RESOURCES")]
    pub max_subscribe_resources: Option<usize>,
    /// STUN/DTLS datagrams per second one unvalidated source may send up to control,
    /// per worker, after a burst of twice as many [default: 20].
    #[arg(long, env = "CASCADE_UPCALL_BUDGET_PER_SOURCE")]
    pub upcall_budget_per_source: Option<u32>,
    /// STUN/DTLS datagrams per second all unvalidated sources of one address (IPv4,
    /// or IPv6 /64) may send up to control, per worker, after a burst of twice as
    /// many [default: 100].
    #[arg(long, env = "CASCADE_UPCALL_BUDGET_PER_ADDRESS")]
    pub upcall_budget_per_address: Option<u32>,
    /// STUN/DTLS datagrams per second all unvalidated sources together may send up to
    /// control, per worker, after a burst of as many [default: 2000].
    #[arg(long, env = "CASCADE_UPCALL_BUDGET_TOTAL")]
    pub upcall_budget_total: Option<u32>,
    /// WebSocket URL of the `cascade signal` the `/call` and `/meeting` pages use,
    /// e.g. wss://signal.example.com/v1/connect.
    #[arg(long, env = "CASCADE_SIGNAL_URL", conflicts_with = "signal_store")]
    pub signal_url: Option<String>,
    /// Run `cascade signal` in this process, under `/signal`, with its messages in
    /// this redb file or `redis://` server [default on a generated development
    /// secret: a file in the temporary directory, removed at exit].
    #[arg(long, env = "CASCADE_SIGNAL_STORE")]
    pub signal_store: Option<String>,
    /// Seconds a drain (SIGTERM, POST /admin/drain) waits for live sessions to end
    /// before the server exits anyway [default: 300].
    #[arg(long, env = "CASCADE_DRAIN_DEADLINE")]
    pub drain_deadline: Option<u64>,
    /// Bearer secret of the admin API (POST /admin/drain); the admin API is off
    /// without it.
    #[arg(long, env = "CASCADE_ADMIN_SECRET")]
    pub admin_secret: Option<Secret>,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_listen: Option<SocketAddr>,
    media_listen: Option<SocketAddr>,
    public_ip: Option<IpAddr>,
    public_url: Option<String>,
    #[serde(default)]
    token_secrets: Vec<Secret>,
    dataplane: Option<DataplaneArg>,
    workers: Option<usize>,
    ebpf: Option<EbpfArg>,
    media_interface: Option<String>,
    cluster_secret: Option<Secret>,
    #[serde(default)]
    cluster_insecure_http: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    http3: Option<OnOff>,
    http3_retry_above: Option<usize>,
    #[serde(default)]
    cluster_ca: Vec<PathBuf>,
    #[serde(default)]
    cluster_pins: Vec<String>,
    #[serde(default)]
    members: Vec<String>,
    members_srv: Option<String>,
    members_dns: Option<SocketAddr>,
    members_scheme: Option<MemberScheme>,
    handover: Option<Handover>,
    max_sessions: Option<usize>,
    max_tracks: Option<usize>,
    max_bitrate: Option<u64>,
    max_sessions_per_subject: Option<usize>,
    max_sessions_per_ip: Option<usize>,
    token_max_lifetime: Option<u64>,
    http_header_timeout: Option<u64>,
    http_body_timeout: Option<u64>,
    http_idle_timeout: Option<u64>,
    http_write_timeout: Option<u64>,
    http_max_connections: Option<usize>,
    http_max_connections_per_ip: Option<usize>,
    max_event_streams: Option<usize>,
    max_event_streams_per_ip: Option<usize>,
    max_subscribe_resources: Option<usize>,
    upcall_budget_per_source: Option<u32>,
    upcall_budget_per_address: Option<u32>,
    upcall_budget_total: Option<u32>,
    signal_url: Option<String>,
    signal_store: Option<String>,
    drain_deadline: Option<u64>,
    admin_secret: Option<Secret>,
}

/// Settings after merging flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub http_listen: SocketAddr,
    pub media_listen: SocketAddr,
    pub public_ip: Option<IpAddr>,
    pub public_url: Option<String>,
    /// Empty means: generate a dev secret.
    pub token_secrets: Vec<Secret>,
    pub dataplane: DataplaneArg,
    pub workers: usize,
    pub ebpf: EbpfArg,
    pub media_interface: Option<String>,
    pub cluster_secret: Option<Secret>,
    pub cluster_insecure_http: bool,
    /// Certificate chain and key of the HTTPS listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// No certificate given but HTTP/3 asked for: HTTPS and HTTP/3 with a
    /// development certificate made at start ([`crate::dev_cert`]).
    pub tls_dev: bool,
    /// HTTP/3 beside the HTTPS listener (`None`: off).
    pub http3: Option<crate::http3::Http3Options>,
    pub cluster_ca: Vec<PathBuf>,
    pub cluster_pins: Vec<String>,
    /// Where the data centre's members come from; `None`: placement off.
    pub members: Option<MembershipSource>,
    pub handover: Handover,
    pub capacity: Capacity,
    /// Per-subject and per-address session caps.
    pub session_caps: SessionCaps,
    /// Longest accepted token lifetime, seconds.
    pub token_max_lifetime: u64,
    /// Timeouts and connection, event-stream and subscribe caps of the HTTP listener.
    pub http_limits: HttpLimits,
    /// Each data plane worker's budget for STUN/DTLS from unvalidated sources.
    pub upcall_budget: UpcallBudgetConfig,
    /// The signalling service of the demo pages, elsewhere...
    pub signal_url: Option<String>,
    /// ...or in this process, with its store.
    pub signal_store: Option<StoreLocation>,
    /// Longest a drain waits for live sessions to end.
    pub drain_deadline: Duration,
    /// Bearer secret of `POST /admin/drain`; none: the admin API is off.
    pub admin_secret: Option<Secret>,
}

impl ServeConfig {
    /// Whether the HTTP listener speaks TLS (a configured or a development
    /// certificate).
    pub fn https(&self) -> bool {
        self.tls.is_some() || self.tls_dev
    }
}

/// This server's own limits; at any of them new sessions go to the next member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub max_sessions: Option<usize>,
    pub max_tracks: Option<usize>,
    pub max_bitrate: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("incomplete settings: {0}")]
    Incomplete(&'static str),
}

impl ServeArgs {
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        let tls_dev = self.http3.or(file.http3) == Some(OnOff::On)
            && self.tls_cert.is_none()
            && file.tls_cert.is_none();
        let own_scheme = if self.tls_cert.is_some() || file.tls_cert.is_some() || tls_dev {
            MemberScheme::Https
        } else {
            MemberScheme::Http
        };
        let members_scheme = self
            .members_scheme
            .or(file.members_scheme)
            .unwrap_or(own_scheme);
        let default_addr = |s: &str| -> SocketAddr {
            // The defaults are literal, valid socket addresses.
            s.parse().expect("valid default address")
        };
        let signal_url = self.signal_url.or(file.signal_url);
        let signal_store = self.signal_store.or(file.signal_store);
        if signal_url.is_some() && signal_store.is_some() {
            return Err(ConfigError::Incomplete(
                "signal_url (a signal service elsewhere) and signal_store (one in this process) exclude each other",
            ));
        }
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(ConfigError::Incomplete("tls_cert and tls_key go together")),
        };
        let http3 = match (self.http3.or(file.http3), tls.is_some() || tls_dev) {
            (Some(OnOff::Off), _) | (None, false) => None,
            (Some(OnOff::On) | None, _) => Some(crate::http3::Http3Options {
                retry_above: self
                    .http3_retry_above
                    .or(file.http3_retry_above)
                    .unwrap_or(crate::http3::Http3Options::default().retry_above),
            }),
        };
        Ok(ServeConfig {
            http_listen: self
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_HTTP_LISTEN)),
            media_listen: self
                .media_listen
                .or(file.media_listen)
                .unwrap_or_else(|| default_addr(DEFAULT_MEDIA_LISTEN)),
            public_ip: self.public_ip.or(file.public_ip),
            public_url: self.public_url.or(file.public_url),
            token_secrets: if self.token_secrets.is_empty() {
                file.token_secrets
            } else {
                self.token_secrets
            },
            dataplane: self.dataplane.or(file.dataplane).unwrap_or_default(),
            workers: self.workers.or(file.workers).unwrap_or(0),
            ebpf: self.ebpf.or(file.ebpf).unwrap_or_default(),
            media_interface: self.media_interface.or(file.media_interface),
            cluster_secret: self.cluster_secret.or(file.cluster_secret),
            cluster_insecure_http: self.cluster_insecure_http || file.cluster_insecure_http,
            tls,
            tls_dev,
            http3,
            cluster_ca: if self.cluster_ca.is_empty() {
                file.cluster_ca
            } else {
                self.cluster_ca
            },
            cluster_pins: if self.cluster_pins.is_empty() {
                file.cluster_pins
            } else {
                self.cluster_pins
            },
            members: {
                let list = if self.members.is_empty() {
                    file.members
                } else {
                    self.members
                };
                match (
                    self.members_srv.or(file.members_srv),
                    self.members_dns.or(file.members_dns),
                ) {
                    (Some(name), Some(resolver)) => Some(MembershipSource::Srv {
                        name,
                        resolver,
                        scheme: members_scheme,
                    }),
                    (Some(_), None) => {
                        return Err(ConfigError::Incomplete("members_srv needs members_dns"));
                    }
                    (None, _) if list.is_empty() => None,
                    (None, _) => Some(MembershipSource::Static(
                        list.iter()
                            .map(|u| {
                                member_from_url(u).ok_or(ConfigError::Incomplete(
                                    "members are base URLs like https://m1.example.com[:port]",
                                ))
                            })
                            .collect::<Result<_, _>>()?,
                    )),
                }
            },
            handover: self.handover.or(file.handover).unwrap_or_default(),
            capacity: Capacity {
                max_sessions: self.max_sessions.or(file.max_sessions),
                max_tracks: self.max_tracks.or(file.max_tracks),
                max_bitrate: self.max_bitrate.or(file.max_bitrate),
            },
            session_caps: SessionCaps {
                per_subject: self
                    .max_sessions_per_subject
                    .or(file.max_sessions_per_subject),
                per_ip: self.max_sessions_per_ip.or(file.max_sessions_per_ip),
            },
            token_max_lifetime: self
                .token_max_lifetime
                .or(file.token_max_lifetime)
                .unwrap_or(cascade_core::token::DEFAULT_MAX_LIFETIME),
            http_limits: {
                let d = HttpLimits::default();
                let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
                    flag.or(file).map_or(default, Duration::from_secs)
                };
                HttpLimits {
                    header_timeout: secs(
                        self.http_header_timeout,
                        file.http_header_timeout,
                        d.header_timeout,
                    ),
                    body_timeout: secs(
                        self.http_body_timeout,
                        file.http_body_timeout,
                        d.body_timeout,
                    ),
                    idle_timeout: secs(
                        self.http_idle_timeout,
                        file.http_idle_timeout,
                        d.idle_timeout,
                    ),
                    write_timeout: secs(
                        self.http_write_timeout,
                        file.http_write_timeout,
                        d.write_timeout,
                    ),
                    max_connections: self
                        .http_max_connections
                        .or(file.http_max_connections)
                        .unwrap_or(d.max_connections),
                    max_connections_per_ip: self
                        .http_max_connections_per_ip
                        .or(file.http_max_connections_per_ip)
                        .unwrap_or(d.max_connections_per_ip),
                    max_event_streams: self
                        .max_event_streams
                        .or(file.max_event_streams)
                        .unwrap_or(d.max_event_streams),
                    max_event_streams_per_ip: self
                        .max_event_streams_per_ip
                        .or(file.max_event_streams_per_ip)
                        .unwrap_or(d.max_event_streams_per_ip),
                    max_subscribe_resources: self
                        .max_subscribe_resources
                        .or(file.max_subscribe_resources)
                        .unwrap_or(d.max_subscribe_resources),
                }
            },
            upcall_budget: {
                let d = UpcallBudgetConfig::default();
                let per_source = self
                    .upcall_budget_per_source
                    .or(file.upcall_budget_per_source)
                    .unwrap_or(d.per_source_rate)
                    .max(1);
                let per_address = self
                    .upcall_budget_per_address
                    .or(file.upcall_budget_per_address)
                    .unwrap_or(d.per_address_rate)
                    .max(1);
                let total = self
                    .upcall_budget_total
                    .or(file.upcall_budget_total)
                    .unwrap_or(d.global_rate)
                    .max(1);
                UpcallBudgetConfig {
                    per_source_rate: per_source,
                    per_source_burst: per_source.saturating_mul(2),
                    per_address_rate: per_address,
                    per_address_burst: per_address.saturating_mul(2),
                    global_rate: total,
                    global_burst: total,
                }
            },
            signal_url,
            signal_store: signal_store.map(|s| StoreLocation::parse(&s)),
            drain_deadline: Duration::from_secs(
                self.drain_deadline
                    .or(file.drain_deadline)
                    .unwrap_or(crate::drain::DEFAULT_DRAIN_DEADLINE),
            ),
            admin_secret: self.admin_secret.or(file.admin_secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(c.media_listen.to_string(), DEFAULT_MEDIA_LISTEN);
        assert!(c.token_secrets.is_empty());

        let dir = std::env::temp_dir().join(format!("cascade-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "http_listen = \"127.0.0.1:9000\"\ntoken_secrets = [\"k1:abc\"]\nworkers = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            workers: Some(5),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.http_listen.port(), 9000);
        assert_eq!(c.token_secrets, vec![Secret::new("k1:abc")]);
        assert_eq!(c.workers, 5);

        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(matches!(args.resolve(), Err(ConfigError::Parse { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let args = ServeArgs {
            token_secrets: vec![Secret::new("k1:plain-token-key"), Secret::new("bare-key")],
            cluster_secret: Some(Secret::new("plain-cluster-key")),
            ..Default::default()
        };
        let printed = format!("{args:?}");
        let config = format!("{:?}", args.resolve().unwrap());
        for text in [&printed, &config] {
            for secret in ["plain-token-key", "bare-key", "plain-cluster-key"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("k1:<redacted>"), "{text}");
        }
    }

    #[test]
    fn limits_from_flags_file_and_defaults() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.http_limits, HttpLimits::default());
        assert_eq!(c.token_max_lifetime, 24 * 3600);
        assert_eq!(c.session_caps, SessionCaps::default());

        let dir = std::env::temp_dir().join(format!("cascade-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "http_header_timeout = 3\nhttp_max_connections_per_ip = 7\nmax_sessions_per_ip = 2\ntoken_max_lifetime = 600\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(path),
            http_header_timeout: Some(2),
            max_event_streams: Some(5),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.http_limits.header_timeout, Duration::from_secs(2));
        assert_eq!(c.http_limits.max_connections_per_ip, 7);
        assert_eq!(c.http_limits.max_event_streams, 5);
        assert_eq!(c.session_caps.per_ip, Some(2));
        assert_eq!(c.token_max_lifetime, 600);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn http3_follows_tls_unless_switched() {
        let tls = |http3| ServeArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            http3,
            ..Default::default()
        };
        assert_eq!(ServeArgs::default().resolve().unwrap().http3, None);
        let on = tls(None).resolve().unwrap().http3;
        assert_eq!(on, Some(crate::http3::Http3Options::default()));
        assert_eq!(tls(Some(OnOff::Off)).resolve().unwrap().http3, None);
        let without_tls = ServeArgs {
            http3: Some(OnOff::On),
            ..Default::default()
        };
        // HTTP/3 asked for without a certificate: a development certificate.
        let dev = without_tls.resolve().unwrap();
        assert!(dev.tls_dev && dev.tls.is_none() && dev.https());
        assert_eq!(dev.http3, Some(crate::http3::Http3Options::default()));
        let plain = ServeArgs::default().resolve().unwrap();
        assert!(!plain.tls_dev && !plain.https());
        assert!(!tls(None).resolve().unwrap().tls_dev);
        let retry = ServeArgs {
            http3_retry_above: Some(0),
            ..tls(Some(OnOff::On))
        };
        assert_eq!(retry.resolve().unwrap().http3.unwrap().retry_above, 0);
    }
}
/// How a request that belongs to another member is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handover {
    /// `307 Temporary Redirect` to the member (WHIP/WHEP clients follow it).
    #[default]
    Redirect,
    /// Forward the request and relay the member's answer.
    Proxy,
}
