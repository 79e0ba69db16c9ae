//! The `cascade` media server's shell: it turns HTTP requests and datagrams into
//! inputs of the sans-IO core ([`cascade_core`]) and the core's outputs into I/O:
//! the HTTP API ([`api`]), the demo pages and in-process signalling ([`demo`]), the
//! server loop and its state ([`server`]), the HTTP listener and its limits
//! ([`listener`], [`limits`]), HTTP/3 ([`http3`]) and the development certificate
//! ([`dev_cert`]), configuration, metrics, the cluster's TLS trust and HTTP/3 calls
//! ([`cluster_h3`]) and the eBPF shell ([`kernel`]). The core decides;
//! the shell carries out, and changes the data plane only with the core's
//! `cascade_command::command::Command`s.

pub mod api;
pub mod check_config;
pub mod cluster_ca;
pub mod cluster_h3;
pub mod cluster_tls;
pub mod config;
pub mod demo;
pub mod dev_cert;
pub mod drain;
pub mod error;
pub mod etag;
pub mod http3;
pub mod kernel;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod mcu;
pub mod metrics;
pub mod probe;
pub mod readiness;
pub mod server;

/// Seconds since the Unix epoch: the shell's one reading of the wall clock for tokens
/// and certificates (the core takes it as an argument).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
