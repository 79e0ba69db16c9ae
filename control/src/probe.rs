//! `cascade probe`: a health check for container runtimes and service managers
//! that have no HTTP client at hand (the runtime image has no curl). It resolves
//! the configuration like `cascade serve` (flags, `CASCADE_*`, `--config`), asks
//! this server's own `/healthz` on loopback (HTTPS when a certificate is
//! configured; the certificate is not verified: the probe talks to itself) and
//! exits 0 on 2xx, 1 otherwise (503 while draining).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::ServeArgs;

/// `cascade probe` flags: the server's own settings, or a URL.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// URL to probe instead (e.g. `cascade dns`'s http://127.0.0.1:8053/healthz);
    /// the server settings are then not read.
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The URL to probe: `--url`, or the `/healthz` of the server `args` configure,
/// on loopback.
pub fn health_url(args: ProbeArgs) -> anyhow::Result<String> {
    if let Some(url) = args.url {
        return Ok(url);
    }
    let config = args.serve.resolve()?;
    let listen = config.http_listen;
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if config.https() { "https" } else { "http" };
    Ok(format!(
        "{scheme}://{}/healthz",
        SocketAddr::new(ip, listen.port())
    ))
}

/// Probes `url`; prints the outcome; true on 2xx.
pub async fn run(url: &str) -> bool {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            println!("probe: {e}");
            return false;
        }
    };
    match client.get(url).send().await {
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            println!("{url}: {status} {}", body.trim());
            status.is_success()
        }
        Err(e) => {
            println!("{url}: {e}");
            false
        }
    }
}
