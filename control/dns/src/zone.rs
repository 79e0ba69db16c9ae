//! The zone file of `cascade dns` (TOML) and its validated, ready-to-answer form.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

/// Default TTL of every record, in seconds.
pub const DEFAULT_TTL: u32 = 30;
/// Default number of A (or AAAA) records in an answer for the zone name.
pub const DEFAULT_ANSWERS: usize = 2;
/// Default SRV name, relative to the zone.
pub const DEFAULT_SRV_NAME: &str = "_cascade._tcp";
/// Default SRV port of a server: HTTPS.
pub const DEFAULT_PORT: u16 = 443;

/// The zone file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneFile {
    /// The zone name, e.g. `media.example.test`.
    pub zone: String,
    pub ttl: Option<u32>,
    pub answers: Option<usize>,
    /// SRV name listing every healthy server, relative to the zone (or absolute with a
    /// trailing dot, inside the zone).
    pub srv_name: Option<String>,
    /// Host names of the zone's name servers (NS records at the zone name).
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Region of clients that no `[regions]` entry matches.
    pub default_region: Option<String>,
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerEntry>,
    /// CIDR → region.
    #[serde(default)]
    pub regions: BTreeMap<String, String>,
    /// Region → region → round-trip latency in ms.
    #[serde(default)]
    pub latency: BTreeMap<String, BTreeMap<String, u32>>,
}

/// One `[[server]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// Name relative to the zone (`m1` → `m1.media.example.test`).
    pub name: String,
    pub address: IpAddr,
    pub region: String,
    /// Port announced in the SRV record (the server's HTTPS API port).
    pub port: Option<u16>,
    /// Probed with `GET` when given; a server without one is always healthy.
    pub health_url: Option<String>,
    /// Protocols of its HTTPS records (`alpn`), most preferred first [default:
    /// `["h3", "h2"]`]; `[]`: no HTTPS record (a server without TLS).
    pub alpn: Option<Vec<String>>,
}

/// A media server of the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// As in the zone file, lowercase (`m1`).
    pub name: String,
    /// Fully qualified host name (`m1.media.example.test.`).
    pub host: Name,
    pub address: IpAddr,
    pub region: String,
    pub port: u16,
    pub health_url: Option<String>,
    /// The `alpn` of its HTTPS records; empty: it has none.
    pub alpn: Vec<String>,
}

impl Server {
    /// Host name without the trailing dot.
    pub fn host_str(&self) -> String {
        self.host.to_ascii().trim_end_matches('.').to_string()
    }
}

/// A validated zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Zone name, lowercase, fully qualified.
    pub origin: Name,
    pub ttl: u32,
    pub answers: usize,
    /// Fully qualified SRV name.
    pub srv_name: Name,
    /// SOA serial; bumped on every reload.
    pub serial: u32,
    pub nameservers: Vec<Name>,
    /// Sorted by name.
    pub servers: Vec<Server>,
    /// Longest prefix first.
    regions: Vec<(IpNet, String)>,
    default_region: Option<String>,
    latency: HashMap<(String, String), u32>,
}

impl Zone {
    /// Reads and validates a zone file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read zone file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("bad zone file {}", path.display()))
    }

    /// Parses and validates the text of a zone file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: ZoneFile = toml::from_str(text)?;
        Self::from_file(file)
    }

    pub fn from_file(file: ZoneFile) -> anyhow::Result<Self> {
        let origin = fqdn(&file.zone).context("zone")?;
        ensure!(!origin.is_root(), "the zone cannot be the root");
        let ttl = file.ttl.unwrap_or(DEFAULT_TTL);
        ensure!(ttl <= 86_400, "ttl {ttl} is over a day");
        let answers = file.answers.unwrap_or(DEFAULT_ANSWERS);
        ensure!(answers >= 1, "answers must be at least 1");

        let srv_name = relative(
            file.srv_name.as_deref().unwrap_or(DEFAULT_SRV_NAME),
            &origin,
        )
        .context("srv_name")?;
        let mut nameservers = Vec::new();
        for ns in &file.nameservers {
            nameservers.push(fqdn(ns).with_context(|| format!("nameserver {ns:?}"))?);
        }

        let mut servers = Vec::new();
        let mut seen = HashSet::new();
        for entry in file.servers {
            let name = entry.name.trim().to_ascii_lowercase();
            ensure!(!name.is_empty(), "a server has an empty name");
            ensure!(
                !name.ends_with('.'),
                "server {name:?}: give the name relative to the zone"
            );
            let host = relative(&name, &origin).with_context(|| format!("server {name:?}"))?;
            ensure!(host != srv_name, "server {name:?} has the SRV name");
            ensure!(seen.insert(name.clone()), "server {name:?} appears twice");
            ensure!(
                !entry.region.is_empty(),
                "server {name:?} has an empty region"
            );
            if let Some(url) = &entry.health_url {
                ensure!(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "server {name:?}: health_url must be an http:// or https:// URL (https: see --health-ca), not {url:?}"
                );
                reqwest::Url::parse(url)
                    .with_context(|| format!("server {name:?}: bad health_url {url:?}"))?;
            }
            let alpn = entry
                .alpn
                .unwrap_or_else(|| crate::svcb::ALPN.map(str::to_owned).to_vec());
            for id in &alpn {
                // RFC 9460 section 7.1.1: 1-255 octets; kept to printable ASCII
                // without the list syntax's comma and backslash.
                ensure!(
                    (1..=255).contains(&id.len())
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'\\'),
                    "server {name:?}: bad alpn id {id:?}"
                );
            }
            servers.push(Server {
                name,
                host,
                address: entry.address,
                region: entry.region,
                port: entry.port.unwrap_or(DEFAULT_PORT),
                health_url: entry.health_url,
                alpn,
            });
        }
        servers.sort_by(|a, b| a.name.cmp(&b.name));

        let mut regions = Vec::new();
        for (cidr, region) in file.regions {
            let net: IpNet = cidr
                .parse()
                .with_context(|| format!("[regions]: {cidr:?} is not a CIDR"))?;
            ensure!(
                !region.is_empty(),
                "[regions]: {cidr:?} has an empty region"
            );
            regions.push((net.trunc(), region));
        }
        // Longest prefix first, then by network so the order is deterministic.
        regions.sort_by(|(a, _), (b, _)| b.prefix_len().cmp(&a.prefix_len()).then(a.cmp(b)));
        for pair in regions.windows(2) {
            if pair[0].0 == pair[1].0 {
                bail!("[regions]: {} appears twice", pair[0].0);
            }
        }

        let mut latency = HashMap::new();
        for (from, row) in file.latency {
            for (to, ms) in row {
                if let Some(old) = latency.insert((from.clone(), to.clone()), ms)
                    && old != ms
                {
                    bail!("[latency]: {from}.{to} given twice");
                }
            }
        }
        // The matrix is symmetric: `eu.us = 90` also gives `us.eu`, unless that is set.
        let given: Vec<((String, String), u32)> =
            latency.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for ((from, to), ms) in given {
            latency.entry((to, from)).or_insert(ms);
        }

        Ok(Zone {
            origin,
            ttl,
            answers,
            srv_name,
            serial: 1,
            nameservers,
            servers,
            regions,
            default_region: file.default_region,
            latency,
        })
    }

    /// Zone name without the trailing dot.
    pub fn origin_str(&self) -> String {
        self.origin.to_ascii().trim_end_matches('.').to_string()
    }

    /// The region of a client address and the prefix length of the `[regions]` entry
    /// that gave it (0 for `default_region` or no region).
    pub fn region_of(&self, ip: IpAddr) -> (Option<&str>, u8) {
        let ip = canonical(ip);
        for (net, region) in &self.regions {
            if net.contains(&ip) {
                return (Some(region), net.prefix_len());
            }
        }
        (self.default_region.as_deref(), 0)
    }

    /// Round-trip latency between two regions in ms: 0 within a region unless the
    /// matrix says otherwise, `None` when the matrix does not know the pair.
    pub fn latency(&self, from: &str, to: &str) -> Option<u32> {
        match self.latency.get(&(from.to_string(), to.to_string())) {
            Some(ms) => Some(*ms),
            None if from == to => Some(0),
            None => None,
        }
    }

    /// The server whose host name is `name`.
    pub fn server_by_host(&self, name: &Name) -> Option<&Server> {
        self.servers.iter().find(|s| &s.host == name)
    }
}

/// IPv4-mapped IPv6 addresses are looked up as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// A fully qualified, lowercase name.
fn fqdn(s: &str) -> anyhow::Result<Name> {
    let s = s.trim();
    ensure!(!s.is_empty(), "empty name");
    let mut name = Name::from_ascii(s)
        .with_context(|| format!("{s:?} is not a DNS name"))?
        .to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// `name` under `origin` (absolute names with a trailing dot must be inside it).
fn relative(name: &str, origin: &Name) -> anyhow::Result<Name> {
    let name = name.trim();
    ensure!(!name.is_empty(), "empty name");
    let parsed = Name::from_ascii(name)
        .with_context(|| format!("{name:?} is not a DNS name"))?
        .to_lowercase();
    let full = if parsed.is_fqdn() {
        parsed
    } else {
        parsed
            .append_domain(origin)
            .with_context(|| format!("{name:?} under {origin} is too long"))?
    };
    ensure!(
        origin.zone_of(&full) && &full != origin,
        "{full} is not a name inside the zone {origin}"
    );
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
zone = "Media.Example.Test"
ttl = 20
answers = 2

[[server]]
name = "m1"
address = "10.1.0.1"
region = "eu"

[[server]]
name = "m3"
address = "10.2.0.1"
region = "us"
health_url = "http://127.0.0.1:1/healthz"
port = 8443

[[server]]
name = "m2"
address = "10.1.0.2"
region = "eu"

[regions]
"10.1.0.0/16" = "eu"
"10.1.9.0/24" = "us"
"10.2.0.0/16" = "us"

[latency]
eu.us = 90
"#;

    #[test]
    fn parses_the_sample() {
        let z = Zone::parse(SAMPLE).unwrap();
        assert_eq!(z.origin_str(), "media.example.test");
        assert_eq!(z.ttl, 20);
        assert_eq!(z.answers, 2);
        assert_eq!(z.srv_name.to_ascii(), "_cascade._tcp.media.example.test.");
        let names: Vec<&str> = z.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["m1", "m2", "m3"]);
        assert_eq!(z.servers[2].host_str(), "m3.media.example.test");
        assert_eq!(z.servers[2].port, 8443);
        assert_eq!(z.servers[0].port, 443);
        assert_eq!(z.latency("eu", "us"), Some(90));
        assert_eq!(z.latency("us", "eu"), Some(90));
        assert_eq!(z.latency("eu", "eu"), Some(0));
        assert_eq!(z.latency("eu", "ap"), None);
    }

    #[test]
    fn longest_prefix_wins() {
        let z = Zone::parse(SAMPLE).unwrap();
        assert_eq!(z.region_of("10.1.2.3".parse().unwrap()), (Some("eu"), 16));
        assert_eq!(z.region_of("10.1.9.3".parse().unwrap()), (Some("us"), 24));
        assert_eq!(z.region_of("10.2.0.9".parse().unwrap()), (Some("us"), 16));
        assert_eq!(
            z.region_of("::ffff:10.2.0.9".parse().unwrap()),
            (Some("us"), 16)
        );
        assert_eq!(z.region_of("192.0.2.1".parse().unwrap()), (None, 0));
    }

    #[test]
    fn rejects_bad_files() {
        for (bad, why) in [
            ("zone = \"x.test\"\nbogus = 1", "unknown key"),
            ("ttl = 3", "no zone"),
            ("zone = \"x.test\"\nanswers = 0", "zero answers"),
            (
                "zone = \"x.test\"\n[[server]]\nname = \"a\"\naddress = \"nope\"\nregion = \"eu\"",
                "bad address",
            ),
            (
                "zone = \"x.test\"\n[[server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nregion = \"eu\"\n[[server]]\nname = \"A\"\naddress = \"10.0.0.2\"\nregion = \"eu\"",
                "duplicate server",
            ),
            (
                "zone = \"x.test\"\n[[server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nregion = \"eu\"\nhealth_url = \"ftp://10.0.0.1/\"",
                "ftp probe",
            ),
            (
                "zone = \"x.test\"\n[regions]\n\"10.0.0.0/33\" = \"eu\"",
                "bad CIDR",
            ),
            (
                "zone = \"x.test\"\nsrv_name = \"_x._tcp.other.test.\"",
                "SRV outside",
            ),
        ] {
            assert!(Zone::parse(bad).is_err(), "accepted a file with {why}");
        }
    }
}
