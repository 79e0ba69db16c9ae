//! The one ranking function behind both the DNS answers and HTTPDNS: which servers a
//! client gets, best first.

use std::net::IpAddr;

use ipnet::IpNet;

use super::health::Health;
use super::zone::{Server, Zone, canonical};
use cascade_core::placement;

/// Granularity of the load-spreading key: clients in the same /24 (IPv4) or /56
/// (IPv6) get the same order among equally near servers.
pub const SPREAD_PREFIX_V4: u8 = 24;
pub const SPREAD_PREFIX_V6: u8 = 56;

/// Which addresses a ranking is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Any,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
            Family::Any => true,
        }
    }
}

/// A client as the ranking sees it: an address and how many of its leading bits are
/// known (the ECS source prefix, or the full length for a plain address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Client {
    /// A client known by its full address.
    pub fn address(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Client { ip, prefix }
    }

    /// A client known by a subnet (EDNS Client Subnet).
    pub fn subnet(ip: IpAddr, prefix: u8) -> Self {
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        Client {
            ip,
            prefix: prefix.min(max),
        }
    }
}

/// One ranked server.
#[derive(Debug, Clone)]
pub struct Ranked<'z> {
    pub server: &'z Server,
    /// Latency from the client's region, `None` when unknown.
    pub latency_ms: Option<u32>,
}

/// The ranking for one client.
#[derive(Debug, Clone)]
pub struct Ranking<'z> {
    /// The client's region, if any entry (or `default_region`) gave one.
    pub region: Option<&'z str>,
    /// How many leading bits of the client address the answer depends on: the ECS
    /// scope prefix to return.
    pub scope_prefix: u8,
    /// The load-spreading key (the client's /24 or /56 as a CIDR).
    pub spread_key: String,
    /// Servers, best first (all of them, not cut to the zone's `answers`).
    pub servers: Vec<Ranked<'z>>,
}

/// Ranks the healthy servers of `family` for `client`: lowest latency from the
/// client's region first (servers of its own region lead), servers whose latency
/// is unknown last, ties broken by rendezvous hashing of the client's /24 (/56) so
/// clients spread over equally near servers. When no server of the family is
/// healthy, every server of the family is ranked instead (fail open: an answer
/// pointing at possibly unhealthy servers beats no answer).
pub fn rank<'z>(zone: &'z Zone, health: &Health, client: Client, family: Family) -> Ranking<'z> {
    let (region, region_prefix) = zone.region_of(client.ip);

    let spread_len = if client.ip.is_ipv4() {
        SPREAD_PREFIX_V4
    } else {
        SPREAD_PREFIX_V6
    }
    .min(client.prefix);
    let spread_net = IpNet::new(client.ip, spread_len)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(client.ip));
    let spread_key = spread_net.to_string();

    let of_family: Vec<&Server> = zone
        .servers
        .iter()
        .filter(|s| family.admits(s.address))
        .collect();
    let healthy: Vec<&Server> = of_family
        .iter()
        .copied()
        .filter(|s| health.is_healthy(s))
        .collect();
    let candidates = if healthy.is_empty() {
        of_family
    } else {
        healthy
    };

    let mut scored: Vec<(Option<u32>, u64, Ranked<'z>)> = candidates
        .into_iter()
        .map(|s| {
            let latency_ms = region.and_then(|r| zone.latency(r, &s.region));
            let hrw = placement::score(&spread_key, &s.name);
            (
                latency_ms,
                hrw,
                Ranked {
                    server: s,
                    latency_ms,
                },
            )
        })
        .collect();
    scored.sort_by(|(la, ha, a), (lb, hb, b)| {
        // Known latencies first, smallest first; then the highest HRW score.
        la.is_none()
            .cmp(&lb.is_none())
            .then(la.cmp(lb))
            .then(hb.cmp(ha))
            .then_with(|| a.server.name.cmp(&b.server.name))
    });

    Ranking {
        region,
        // The answer depends on the region entry that matched and on the spreading
        // key, so it holds for clients sharing the longer of the two prefixes.
        scope_prefix: region_prefix.max(spread_len),
        spread_key,
        servers: scored.into_iter().map(|(_, _, r)| r).collect(),
    }
}

/// Every server SRV lists: the healthy ones sorted by name, or all of them when none
/// is healthy (fail open, as in [`rank`]).
pub fn srv_members<'z>(zone: &'z Zone, health: &Health) -> Vec<&'z Server> {
    let healthy: Vec<&Server> = zone
        .servers
        .iter()
        .filter(|s| health.is_healthy(s))
        .collect();
    if healthy.is_empty() {
        zone.servers.iter().collect()
    } else {
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"
zone = "media.example.test"
answers = 2
[[server]]
name = "m1"
address = "10.1.0.1"
region = "eu"
[[server]]
name = "m2"
address = "10.1.0.2"
region = "eu"
[[server]]
name = "m3"
address = "10.2.0.1"
region = "us"
health_url = "http://127.0.0.1:9/healthz"
[[server]]
name = "m4"
address = "10.2.0.2"
region = "us"
[[server]]
name = "m5"
address = "10.3.0.1"
region = "ap"
[[server]]
name = "v6"
address = "2001:db8::1"
region = "eu"
[regions]
"10.1.0.0/16" = "eu"
"10.2.0.0/16" = "us"
[latency]
eu.us = 90
"#;

    fn names(r: &Ranking<'_>) -> Vec<String> {
        r.servers.iter().map(|s| s.server.name.clone()).collect()
    }

    fn healthy_all(zone: &Zone) -> Health {
        let h = Health::default();
        for s in &zone.servers {
            if let Some(url) = &s.health_url {
                h.set(&s.name, url, true);
            }
        }
        h
    }

    #[test]
    fn own_region_first_then_by_latency_unknown_last() {
        let zone = Zone::parse(ZONE).unwrap();
        let health = healthy_all(&zone);
        let eu = rank(
            &zone,
            &health,
            Client::subnet("10.1.2.0".parse().unwrap(), 24),
            Family::V4,
        );
        assert_eq!(eu.region, Some("eu"));
        assert_eq!(eu.scope_prefix, 24);
        assert_eq!(eu.spread_key, "10.1.2.0/24");
        let n = names(&eu);
        assert_eq!(n.len(), 5, "v4 only: {n:?}");
        let mut head = n[..2].to_vec();
        head.sort();
        assert_eq!(head, ["m1", "m2"]);
        let mut mid = n[2..4].to_vec();
        mid.sort();
        assert_eq!(mid, ["m3", "m4"]);
        assert_eq!(n[4], "m5");
        assert_eq!(eu.servers[0].latency_ms, Some(0));
        assert_eq!(eu.servers[2].latency_ms, Some(90));
        assert_eq!(eu.servers[4].latency_ms, None);

        let us = rank(
            &zone,
            &health,
            Client::address("10.2.7.7".parse().unwrap()),
            Family::V4,
        );
        let mut head = names(&us)[..2].to_vec();
        head.sort();
        assert_eq!(head, ["m3", "m4"]);
        assert_eq!(us.scope_prefix, 24);

        let v6 = rank(
            &zone,
            &health,
            Client::address("10.1.0.9".parse().unwrap()),
            Family::V6,
        );
        assert_eq!(names(&v6), ["v6"]);
        let any = rank(
            &zone,
            &health,
            Client::address("10.1.0.9".parse().unwrap()),
            Family::Any,
        );
        assert_eq!(any.servers.len(), 6);
    }

    #[test]
    fn a_short_source_prefix_bounds_the_spread_key() {
        let zone = Zone::parse(ZONE).unwrap();
        let health = healthy_all(&zone);
        let r = rank(
            &zone,
            &health,
            Client::subnet("10.1.0.0".parse().unwrap(), 16),
            Family::V4,
        );
        assert_eq!(r.spread_key, "10.1.0.0/16");
        assert_eq!(r.scope_prefix, 16);
        let r = rank(
            &zone,
            &health,
            Client::subnet("192.0.2.0".parse().unwrap(), 24),
            Family::V4,
        );
        assert_eq!(r.region, None);
        assert_eq!(r.scope_prefix, 24);
        assert!(r.servers.iter().all(|s| s.latency_ms.is_none()));
    }

    #[test]
    fn equal_servers_spread_over_client_subnets() {
        let zone = Zone::parse(ZONE).unwrap();
        let health = healthy_all(&zone);
        let mut first_m1 = 0;
        for i in 0..=255u8 {
            let ip: IpAddr = format!("10.1.{i}.1").parse().unwrap();
            let a = rank(&zone, &health, Client::address(ip), Family::V4);
            let b = rank(&zone, &health, Client::address(ip), Family::V4);
            assert_eq!(names(&a), names(&b), "not deterministic");
            if a.servers[0].server.name == "m1" {
                first_m1 += 1;
            }
        }
        assert!(
            (88..=168).contains(&first_m1),
            "m1 first for {first_m1} of 256 subnets"
        );
    }

    #[test]
    fn unhealthy_servers_drop_out_and_all_down_fails_open() {
        let zone = Zone::parse(ZONE).unwrap();
        let health = healthy_all(&zone);
        health.set("m3", "http://127.0.0.1:9/healthz", false);
        let us = rank(
            &zone,
            &health,
            Client::address("10.2.0.9".parse().unwrap()),
            Family::V4,
        );
        assert_eq!(names(&us)[0], "m4");
        assert!(!names(&us).contains(&"m3".to_string()));
        assert!(!srv_members(&zone, &health).iter().any(|s| s.name == "m3"));
        // A health result for another URL (the zone changed) does not count.
        let h2 = Health::default();
        h2.set("m3", "http://127.0.0.1:10/other", true);
        assert!(!h2.is_healthy(&zone.servers[2]));

        let only = Zone::parse(
            "zone = \"z.test\"\n[[server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nregion = \"eu\"\nhealth_url = \"http://127.0.0.1:9/\"",
        )
        .unwrap();
        let down = Health::default();
        down.set("a", "http://127.0.0.1:9/", false);
        let r = rank(
            &only,
            &down,
            Client::address("10.0.0.9".parse().unwrap()),
            Family::V4,
        );
        assert_eq!(names(&r), ["a"]);
        assert_eq!(srv_members(&only, &down).len(), 1);
    }
}
