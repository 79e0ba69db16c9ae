//! Prometheus metrics for `GET /metrics`. Gauges are read from the SFU core and
//! counters from the data plane's per-worker counters when the endpoint is scraped,
//! so nothing on the packet path touches the registry.

use std::sync::Mutex;

use cascade_dataplane::stats::{DropReason, LocalStats};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    sessions: IntGauge,
    publications: IntGauge,
    subscriptions: IntGauge,
    relays: IntGauge,
    relayed: IntCounter,
    relay_recovered: IntCounter,
    packets_in: IntCounter,
    bytes_in: IntCounter,
    packets_out: IntCounter,
    bytes_out: IntCounter,
    retransmitted: IntCounter,
    drops: IntCounterVec,
    ebpf: prometheus::IntGaugeVec,
    /// Calls this server made to other servers, by kind.
    pub cluster_requests: IntCounterVec,
    /// Publish/subscribe requests handed to another member, by how.
    pub handovers: IntCounterVec,
    /// 1 when this server finds itself among the placement members, else 0; shown
    /// only with placement on ([`Metrics::track_self_member`]).
    self_member: IntGauge,
    /// Open HTTP connections.
    pub http_connections: IntGauge,
    /// 1 while the server drains (SIGTERM or `POST /admin/drain`), else 0.
    pub draining: IntGauge,
    /// Refusals for load: connections closed on accept and requests answered 503/429,
    /// by reason.
    pub refused: IntCounterVec,
    /// QUIC clients sent a Retry to prove their address.
    pub http3_retries: IntCounter,
    /// Data-plane totals at the previous scrape (counters only move by the delta).
    last: Mutex<LocalStats>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Labels of `cascade_refused_total`: connections over the total or per-address cap,
/// and the stable codes of 503/429 answers.
pub const REFUSAL_REASONS: [&str; 9] = [
    "connections",
    "connections_per_address",
    "server_full",
    "too_many_sessions_for_subject",
    "too_many_sessions_from_address",
    "too_many_event_streams",
    "too_many_event_streams_from_address",
    "capacity_exhausted",
    "draining",
];

/// Values sampled from the SFU core at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreGauges {
    pub sessions: usize,
    pub publications: usize,
    pub subscriptions: usize,
    pub relays: usize,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let drops = IntCounterVec::new(
            Opts::new("cascade_drops_total", "Datagrams dropped by the data plane"),
            &["reason"],
        )?;
        registry.register(Box::new(drops.clone()))?;
        for r in DropReason::ALL {
            drops.with_label_values(&[r.label()]);
        }
        Ok(Self {
            sessions: gauge("cascade_sessions", "Live WebRTC sessions")?,
            publications: gauge("cascade_publications", "Live publications")?,
            subscriptions: gauge("cascade_subscriptions", "Live subscriptions")?,
            relays: gauge("cascade_relays", "Open cascade relays to other servers")?,
            relayed: counter(
                "cascade_relayed_total",
                "Packets copied unchanged to cascade peers by userspace",
            )?,
            relay_recovered: counter(
                "cascade_relay_recovered_total",
                "Packets a cascade edge lost and got again from this server's cache",
            )?,
            packets_in: counter(
                "cascade_packets_in_total",
                "Datagrams received on the media port",
            )?,
            bytes_in: counter("cascade_bytes_in_total", "Bytes received on the media port")?,
            packets_out: counter(
                "cascade_packets_out_total",
                "Media datagrams sent by the data plane",
            )?,
            bytes_out: counter(
                "cascade_bytes_out_total",
                "Media bytes sent by the data plane",
            )?,
            retransmitted: counter(
                "cascade_retransmitted_total",
                "Packets resent to subscribers from the NACK cache",
            )?,
            drops,
            ebpf: {
                let g = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "cascade_ebpf_packets",
                        "eBPF fast-path counters since the programs were attached, by counter",
                    ),
                    &["counter"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            cluster_requests: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "cascade_cluster_requests_total",
                        "HTTP calls this server made to other servers, by kind",
                    ),
                    &["kind"],
                )?;
                registry.register(Box::new(c.clone()))?;
                for k in [
                    "relay_open",
                    "relay_open_h3",
                    "relay_close",
                    "relay_close_h3",
                    "room",
                    "room_h3",
                    "proxy",
                    "proxy_h3",
                ] {
                    c.with_label_values(&[k]);
                }
                c
            },
            handovers: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "cascade_handovers_total",
                        "Publish/subscribe requests sent to another member: to the owner, or spilled over at capacity",
                    ),
                    &["reason"],
                )?;
                registry.register(Box::new(c.clone()))?;
                for k in ["owner", "capacity", "not_member"] {
                    c.with_label_values(&[k]);
                }
                c
            },
            self_member: IntGauge::new(
                "cascade_placement_self_member",
                "1 when this server is among the placement members it resolved, else 0",
            )?,
            http_connections: gauge("cascade_http_connections", "Open HTTP connections")?,
            draining: gauge(
                "cascade_draining",
                "1 while the server drains: no new sessions, live ones go on",
            )?,
            refused: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "cascade_refused_total",
                        "Connections and requests refused at a cap, by reason",
                    ),
                    &["reason"],
                )?;
                registry.register(Box::new(c.clone()))?;
                for k in REFUSAL_REASONS {
                    c.with_label_values(&[k]);
                }
                c
            },
            http3_retries: counter(
                "cascade_http3_retries_total",
                "QUIC clients sent a Retry to prove their address before their handshake",
            )?,
            registry,
            last: Mutex::new(LocalStats::default()),
        })
    }

    /// Shows `cascade_placement_self_member` (placement is on).
    /// The registry, for metrics kept elsewhere (the MCU's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn track_self_member(&self) {
        // Registering twice is the only possible error: then it is shown already.
        let _ = self.registry.register(Box::new(self.self_member.clone()));
    }

    pub fn set_self_member(&self, listed: bool) {
        self.self_member.set(i64::from(listed));
    }

    /// Renders the text exposition format from fresh samples.
    pub fn render(
        &self,
        core: CoreGauges,
        dataplane: LocalStats,
        ebpf: &[(&'static str, u64)],
    ) -> String {
        for (name, value) in ebpf {
            self.ebpf
                .with_label_values(&[*name])
                .set(i64::try_from(*value).unwrap_or(i64::MAX));
        }
        self.sessions.set(core.sessions as i64);
        self.publications.set(core.publications as i64);
        self.subscriptions.set(core.subscriptions as i64);
        self.relays.set(core.relays as i64);
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            self.packets_in
                .inc_by(dataplane.packets_in.saturating_sub(last.packets_in));
            self.bytes_in
                .inc_by(dataplane.bytes_in.saturating_sub(last.bytes_in));
            self.packets_out
                .inc_by(dataplane.packets_out.saturating_sub(last.packets_out));
            self.bytes_out
                .inc_by(dataplane.bytes_out.saturating_sub(last.bytes_out));
            self.retransmitted
                .inc_by(dataplane.retransmitted.saturating_sub(last.retransmitted));
            self.relayed
                .inc_by(dataplane.relayed.saturating_sub(last.relayed));
            self.relay_recovered.inc_by(
                dataplane
                    .relay_recovered
                    .saturating_sub(last.relay_recovered),
            );
            for r in DropReason::ALL {
                let i = r as usize;
                self.drops
                    .with_label_values(&[r.label()])
                    .inc_by(dataplane.drops[i].saturating_sub(last.drops[i]));
            }
            *last = dataplane;
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_and_counter_deltas() {
        let m = Metrics::new().unwrap();
        let mut dp = LocalStats {
            packets_in: 10,
            ..Default::default()
        };
        dp.drops[DropReason::UnknownSource as usize] = 4;
        let text = m.render(
            CoreGauges {
                sessions: 2,
                publications: 1,
                subscriptions: 1,
                relays: 0,
            },
            dp,
            &[("guard_media_unknown_source", 7)],
        );
        assert!(text.contains("cascade_sessions 2"), "{text}");
        assert!(
            text.contains("cascade_ebpf_packets{counter=\"guard_media_unknown_source\"} 7"),
            "{text}"
        );
        assert!(text.contains("cascade_packets_in_total 10"), "{text}");
        assert!(
            text.contains("cascade_drops_total{reason=\"unknown_source\"} 4"),
            "{text}"
        );
        dp.packets_in = 15;
        let text = m.render(CoreGauges::default(), dp, &[]);
        assert!(text.contains("cascade_packets_in_total 15"), "{text}");
        assert!(text.contains("cascade_sessions 0"), "{text}");
    }
}
