//! Health of the zone's servers: a plain HTTP `GET` of each `health_url` every probe
//! interval. A 2xx answer within the timeout is healthy; anything else takes the
//! server out of the answers at once, the next 2xx puts it back.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context;

use tokio::task::JoinSet;

use super::DnsState;
use super::zone::Server;
use cascade_core::error::error_chain;

/// Longest wait for one probe's answer (shortened to the probe interval when that is
/// shorter, so that a hanging server is out within two intervals too).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probe results, by server name and the URL that was probed.
#[derive(Debug, Default)]
pub struct Health {
    results: RwLock<HashMap<String, (String, bool)>>,
}

impl Health {
    /// Whether `server` may be answered: no `health_url`, or its last probe of that
    /// very URL succeeded. A server not probed yet is not healthy.
    pub fn is_healthy(&self, server: &Server) -> bool {
        let Some(url) = &server.health_url else {
            return true;
        };
        let results = self.results.read().unwrap_or_else(|p| p.into_inner());
        results
            .get(&server.name)
            .is_some_and(|(probed, ok)| probed == url && *ok)
    }

    /// Records a probe result; returns the previous one for the same URL, if any.
    pub fn set(&self, name: &str, url: &str, ok: bool) -> Option<bool> {
        let mut results = self.results.write().unwrap_or_else(|p| p.into_inner());
        let old = results.insert(name.to_string(), (url.to_string(), ok));
        old.and_then(|(u, was)| (u == url).then_some(was))
    }

    /// Forgets servers that are no longer in the zone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut results = self.results.write().unwrap_or_else(|p| p.into_inner());
        results.retain(|name, _| keep(name));
    }
}

/// Builds the probing client: no proxy (probes go straight to the servers);
/// `https` health URLs must present a certificate that chains to one of the CA
/// files `ca` (PEM; e.g. the cluster CA of `cascade cluster init`).
pub fn client(timeout: Duration, ca: &[std::path::PathBuf]) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    for path in ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the health CA {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("parsing the health CA {}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()?)
}

/// Probes every server with a `health_url` once, concurrently, and records the results.
pub async fn probe_round(state: &DnsState, client: &reqwest::Client) {
    let zone = state.zone();
    state
        .health
        .retain(|name| zone.servers.iter().any(|s| s.name == name));
    let mut probes = JoinSet::new();
    for server in &zone.servers {
        let Some(url) = server.health_url.clone() else {
            continue;
        };
        let name = server.name.clone();
        let client = client.clone();
        probes.spawn(async move {
            let outcome = match client.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("status {}", resp.status())),
                Err(e) if e.is_timeout() => Err("timed out".to_string()),
                Err(e) => Err(error_chain(&e)),
            };
            (name, url, outcome)
        });
    }
    while let Some(done) = probes.join_next().await {
        let Ok((name, url, outcome)) = done else {
            continue;
        };
        let ok = outcome.is_ok();
        let before = state.health.set(&name, &url, ok);
        match (&outcome, before) {
            (Ok(()), Some(false)) => tracing::info!(server = %name, "server is healthy again"),
            (Ok(()), None) => tracing::info!(server = %name, "server is healthy"),
            (Err(why), Some(true) | None) => {
                tracing::warn!(server = %name, %url, "server is unhealthy: {why}")
            }
            _ => {}
        }
    }
}

/// Probes every `interval`, and at once whenever the zone changes, until the state
/// is dropped.
pub async fn prober(state: std::sync::Weak<DnsState>, interval: Duration, client: reqwest::Client) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the caller has just probed.
    ticker.tick().await;
    let Some(changed) = state.upgrade().map(|s| s.zone_changed.clone()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = changed.notified() => {}
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        probe_round(&state, &client).await;
    }
}
