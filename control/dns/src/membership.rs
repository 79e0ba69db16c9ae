//! Where the data centre's member list comes from ([`Membership`]): a fixed list, or
//! the SRV records (RFC 2782) of a name such as `_cascade._tcp.dc1.example.com`,
//! re-resolved on their TTL. `cascade dns` serves such records for the healthy
//! servers of its zone. This is the I/O half of placement; the ranking it feeds is
//! `cascade_core::placement`.
//!
//! A member's base URL comes from its SRV record by one rule ([`member_url`]):
//! `{scheme}://{target}[:{port}]`, the scheme being the one configured for the data
//! centre ([`MemberScheme`]; a server defaults to the scheme of its own API) and the
//! port left out when it is the scheme's default. The target is replaced by its
//! address when the answer carries one. A server recognises itself by that URL
//! ([`Membership::identify`]), says so in its log when it is or stops being listed,
//! and exposes it ([`Membership::lists_self`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use cascade_core::placement::{Member, owner, same_url};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the member list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipSource {
    /// A fixed list.
    Static(Vec<Member>),
    /// The SRV records of `name`, asked of the DNS server at `resolver`; member URLs
    /// use `scheme`.
    Srv {
        name: String,
        resolver: SocketAddr,
        scheme: MemberScheme,
    },
}

/// The scheme of the member URLs built from SRV records: the data centre's servers
/// serve their API either all over HTTPS or all over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberScheme {
    /// `http://target[:port]`, the port left out when it is 80.
    Http,
    /// `https://target[:port]`, the port left out when it is 443.
    Https,
}

/// Shortest and longest wait between two SRV resolutions; the records' TTL is
/// clamped to this range.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
pub const MAX_REFRESH: Duration = Duration::from_secs(300);
/// Wait before retrying a resolution that failed (the last list is kept meanwhile).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Time allowed for one DNS exchange.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The current members of a data centre, kept up to date in the background for an
/// SRV source. Reading is one uncontended read lock and an `Arc` clone.
#[derive(Debug)]
pub struct Membership {
    source: MembershipSource,
    current: RwLock<Arc<Vec<Member>>>,
    /// The list before the last change: rooms whose owner moved are found on
    /// their owner under it.
    previous: RwLock<Arc<Vec<Member>>>,
    /// This server's own base URL, once it said which it is.
    me: OnceLock<String>,
    /// Whether the list holds `me`: [`UNKNOWN`], [`LISTED`] or [`NOT_LISTED`].
    listed: AtomicU8,
}

const UNKNOWN: u8 = 0;
const LISTED: u8 = 1;
const NOT_LISTED: u8 = 2;

impl Membership {
    /// Starts following `source`. For SRV, the first resolution is done before this
    /// returns (a failure is logged and leaves the list empty), then a background
    /// task re-resolves on the records' TTL until the `Membership` is dropped.
    /// Needs a Tokio runtime for an SRV source.
    pub async fn start(source: MembershipSource) -> Arc<Self> {
        let initial = match &source {
            MembershipSource::Static(members) => sorted(members.clone()),
            MembershipSource::Srv { .. } => Vec::new(),
        };
        let this = Arc::new(Membership {
            source,
            current: RwLock::new(Arc::new(initial)),
            previous: RwLock::new(Arc::new(Vec::new())),
            me: OnceLock::new(),
            listed: AtomicU8::new(UNKNOWN),
        });
        if matches!(this.source, MembershipSource::Srv { .. }) {
            let first = this.refresh().await;
            let weak = Arc::downgrade(&this);
            tokio::spawn(follow(weak, first));
        }
        this
    }

    /// A fixed member list (no task, no runtime needed).
    pub fn fixed(members: Vec<Member>) -> Self {
        Membership {
            current: RwLock::new(Arc::new(sorted(members.clone()))),
            previous: RwLock::new(Arc::new(Vec::new())),
            source: MembershipSource::Static(members),
            me: OnceLock::new(),
            listed: AtomicU8::new(UNKNOWN),
        }
    }

    /// Tells the membership which member this server is (its base URL); from then on
    /// it logs whether the list holds it, at once and whenever that changes.
    pub fn identify(&self, me: &str) {
        let _ = self.me.set(me.to_owned());
        self.note_self(&self.members());
    }

    /// Whether the current list holds this server (`None` before [`identify`]).
    ///
    /// [`identify`]: Self::identify
    pub fn lists_self(&self) -> Option<bool> {
        match self.listed.load(Ordering::Relaxed) {
            LISTED => Some(true),
            NOT_LISTED => Some(false),
            _ => None,
        }
    }

    fn note_self(&self, members: &[Member]) {
        let Some(me) = self.me.get() else {
            return;
        };
        let listed = members.iter().any(|m| same_url(&m.url, me));
        let now = if listed { LISTED } else { NOT_LISTED };
        if self.listed.swap(now, Ordering::Relaxed) == now {
            return;
        }
        let urls: Vec<&str> = members.iter().map(|m| m.url.as_str()).collect();
        if listed {
            tracing::info!(%me, "this server is among the members: it serves the rooms it owns");
        } else if members.is_empty() {
            tracing::warn!(%me, "no members known: this server serves every room itself");
        } else {
            tracing::warn!(
                %me,
                members = ?urls,
                "this server is not among the members: it serves no room and sends each \
                 request to the room's owner among them (a member's URL is \
                 scheme://target[:port] from its SRV record: check --public-url and \
                 --members-scheme)"
            );
        }
    }

    pub fn source(&self) -> &MembershipSource {
        &self.source
    }

    /// The current members, sorted by id.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The members before the last change (empty before any change).
    pub fn previous_members(&self) -> Arc<Vec<Member>> {
        self.previous
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The owner of `room` among the current members, if any.
    pub fn owner(&self, room: &str) -> Option<Member> {
        owner(room, &self.members()).cloned()
    }

    /// Resolves the SRV source once and installs the result; returns how long to
    /// wait before the next resolution. A failure keeps the previous list.
    pub async fn refresh(&self) -> Duration {
        let MembershipSource::Srv {
            name,
            resolver,
            scheme,
        } = &self.source
        else {
            return MAX_REFRESH;
        };
        match resolve_srv(name, *resolver, *scheme).await {
            Ok(SrvAnswer { members, ttl }) => {
                let members = sorted(members);
                let changed = {
                    let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
                    let changed = **cur != members;
                    if changed {
                        let old = std::mem::replace(&mut *cur, Arc::new(members.clone()));
                        // An empty list (before the first answer) is no previous owner.
                        if !old.is_empty() {
                            *self.previous.write().unwrap_or_else(|p| p.into_inner()) = old;
                        }
                    }
                    changed
                };
                if changed {
                    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
                    tracing::info!(srv = %name, members = ?ids, "membership changed");
                }
                self.note_self(&members);
                Duration::from_secs(ttl.into()).clamp(MIN_REFRESH, MAX_REFRESH)
            }
            Err(e) => {
                tracing::warn!(srv = %name, %resolver, "SRV resolution failed, keeping the last members: {e:#}");
                RETRY_AFTER_FAILURE
            }
        }
    }
}

async fn follow(weak: Weak<Membership>, mut wait: Duration) {
    loop {
        tokio::time::sleep(wait).await;
        let Some(this) = weak.upgrade() else {
            return;
        };
        wait = this.refresh().await;
    }
}

fn sorted(mut members: Vec<Member>) -> Vec<Member> {
    members.sort();
    members.dedup();
    members
}

/// What one SRV resolution found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvAnswer {
    pub members: Vec<Member>,
    /// Smallest TTL of the records (of the SOA for a negative answer).
    pub ttl: u32,
}

/// The base URL of a member announced by SRV as `target:port` (the target's address
/// when the answer carries it): `scheme://target`, with `:port` unless it is the
/// scheme's default port (80 for HTTP, 443 for HTTPS).
pub fn member_url(target: &str, port: u16, scheme: MemberScheme) -> String {
    match (scheme, port) {
        (MemberScheme::Http, 80) => format!("http://{target}"),
        (MemberScheme::Http, _) => format!("http://{target}:{port}"),
        (MemberScheme::Https, 443) => format!("https://{target}"),
        (MemberScheme::Https, _) => format!("https://{target}:{port}"),
    }
}

/// Asks `resolver` for the SRV records of `name` (UDP, then TCP when the answer is
/// truncated); member URLs use `scheme`. A name with no records (NXDOMAIN or no data)
/// is an empty member list.
pub async fn resolve_srv(
    name: &str,
    resolver: SocketAddr,
    scheme: MemberScheme,
) -> anyhow::Result<SrvAnswer> {
    let mut qname = Name::from_ascii(name)
        .with_context(|| format!("bad SRV name {name:?}"))?
        .to_lowercase();
    qname.set_fqdn(true);
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname.clone(), RecordType::SRV));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    query.set_edns(edns);
    let bytes = query.to_vec().context("encoding the SRV query")?;

    let mut response = exchange_udp(&bytes, query.metadata.id, resolver).await?;
    if response.metadata.truncation {
        response = exchange_tcp(&bytes, query.metadata.id, resolver).await?;
    }
    match response.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => bail!("{resolver} answered {code}"),
    }
    // Addresses of the targets, when the server gave them (RFC 2782 suggests it):
    // member URLs then need no further lookup by whoever calls them.
    let addresses: Vec<(String, std::net::IpAddr)> = response
        .additionals
        .iter()
        .filter_map(|r| {
            let ip = match &r.data {
                RData::A(a) => std::net::IpAddr::V4(a.0),
                RData::AAAA(a) => std::net::IpAddr::V6(a.0),
                _ => return None,
            };
            let name = r.name.to_ascii();
            Some((name.trim_end_matches('.').to_ascii_lowercase(), ip))
        })
        .collect();
    let mut members = Vec::new();
    let mut ttl: Option<u32> = None;
    // Every SRV record of the answer section counts: a recursive resolver may have
    // followed a CNAME from `name` to the name that holds them.
    for record in &response.answers {
        if let RData::SRV(srv) = &record.data {
            // RFC 2782: a target of "." means the service is decidedly not available.
            if srv.target.is_root() {
                continue;
            }
            let target = srv.target.to_ascii();
            let target = target.trim_end_matches('.').to_ascii_lowercase();
            let host = match addresses.iter().find(|(n, _)| *n == target) {
                Some((_, std::net::IpAddr::V4(ip))) => ip.to_string(),
                Some((_, std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
                None => target.clone(),
            };
            members.push(Member {
                id: format!("{target}:{}", srv.port),
                url: member_url(&host, srv.port, scheme),
            });
            ttl = Some(ttl.map_or(record.ttl, |t| t.min(record.ttl)));
        }
    }
    let ttl = match ttl {
        Some(t) => t,
        // Negative answer: cache it as RFC 2308 says, min(SOA TTL, SOA minimum).
        None => response
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .unwrap_or(RETRY_AFTER_FAILURE.as_secs() as u32),
    };
    Ok(SrvAnswer { members, ttl })
}

async fn exchange_udp(bytes: &[u8], id: u16, resolver: SocketAddr) -> anyhow::Result<Message> {
    let bind: SocketAddr = if resolver.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(resolver).await?;
    let mut buf = vec![0u8; 65535];
    // Two tries: UDP may lose the query or the answer.
    for _ in 0..2 {
        socket.send(bytes).await?;
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(r) => r?,
            };
            let Ok(msg) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if msg.metadata.id == id && msg.metadata.message_type == MessageType::Response {
                return Ok(msg);
            }
        }
    }
    bail!("no answer from {resolver} within {:?}", QUERY_TIMEOUT * 2)
}

async fn exchange_tcp(bytes: &[u8], id: u16, resolver: SocketAddr) -> anyhow::Result<Message> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(resolver).await?;
        let len = u16::try_from(bytes.len()).context("query too long")?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await?;
        let n = stream.read_u16().await?;
        let mut buf = vec![0u8; n.into()];
        stream.read_exact(&mut buf).await?;
        let msg = Message::from_vec(&buf).context("malformed DNS answer")?;
        if msg.metadata.id != id {
            bail!("answer with another id");
        }
        Ok(msg)
    };
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .with_context(|| format!("no answer from {resolver} over TCP within {QUERY_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use cascade_core::placement::member_from_url;

    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (1..=n)
            .filter_map(|i| member_from_url(&format!("https://m{i}.example.test")))
            .collect()
    }

    #[test]
    fn fixed_membership() {
        let m = Membership::fixed(members(3));
        assert_eq!(m.members().len(), 3);
        assert_eq!(m.owner("demo").as_ref(), owner("demo", &members(3)));
    }

    #[test]
    fn member_urls() {
        use MemberScheme::{Http, Https};
        assert_eq!(member_url("m1.x", 443, Https), "https://m1.x");
        assert_eq!(member_url("m1.x", 8443, Https), "https://m1.x:8443");
        assert_eq!(member_url("m1.x", 80, Https), "https://m1.x:80");
        assert_eq!(member_url("m1.x", 80, Http), "http://m1.x");
        assert_eq!(member_url("10.0.0.1", 8080, Http), "http://10.0.0.1:8080");
        assert_eq!(member_url("m1.x", 443, Http), "http://m1.x:443");
    }

    #[test]
    fn a_server_knows_whether_it_is_listed() {
        let m = Membership::fixed(members(3));
        assert_eq!(m.lists_self(), None);
        m.identify("https://m2.example.test:443/");
        assert_eq!(m.lists_self(), Some(true));
        let m = Membership::fixed(members(3));
        m.identify("http://m2.example.test");
        assert_eq!(m.lists_self(), Some(false));
    }
}
