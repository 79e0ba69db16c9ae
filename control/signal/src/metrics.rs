//! Prometheus metrics of `cascade signal`, served as text at `GET /metrics`.

use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

/// The service's counters and gauges.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub accepted: IntCounter,
    pub duplicate: IntCounter,
    pub delivered: IntCounter,
    commit_batches: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let connections = IntGauge::with_opts(Opts::new(
            "signal_connections",
            "Open WebSocket connections",
        ))?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let accepted = counter(
            "signal_messages_accepted_total",
            "Sends durably stored for the first time",
        )?;
        let duplicate = counter(
            "signal_messages_duplicate_total",
            "Sends that repeated a stored (sender, id) and stored nothing",
        )?;
        let delivered = counter(
            "signal_messages_delivered_total",
            "Message frames written to connections",
        )?;
        let commit_batches = counter(
            "signal_store_commit_batches_total",
            "Store transactions committed (each carries every write pending at the time)",
        )?;
        registry.register(Box::new(connections.clone()))?;
        Ok(Metrics {
            registry,
            connections,
            accepted,
            duplicate,
            delivered,
            commit_batches,
        })
    }

    /// The Prometheus text exposition, with the store's commit count as of now.
    pub fn render(&self, store_commits: u64) -> String {
        let seen = self.commit_batches.get();
        self.commit_batches
            .inc_by(store_commits.saturating_sub(seen));
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
