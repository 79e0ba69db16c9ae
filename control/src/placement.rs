//! Room placement inside one data centre: rendezvous (highest random weight, HRW)
//! hashing of a room id over the data centre's members.
//!
//! Every server computes the same ranking from the same member list, so a room lands
//! on one server whichever server a request hit, with no state shared between them.
//! When a member joins or leaves, only the rooms it wins or held move. When the
//! owner is at capacity, the request spills to the next member in HRW order
//! ([`place`]), which cascades from the owner.
//!
//! The member list comes from [`Membership`]: a fixed list, or the SRV records
//! (RFC 2782) of a name such as `_cascade._tcp.dc1.example.com`, re-resolved on
//! their TTL. `cascade dns` serves such records for the healthy servers of its zone.
//!
//! The ranking functions are pure; only [`Membership`] does I/O.

use std::hash::Hasher;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use siphasher::sip::SipHasher13;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// SipHash keys of the placement hash. They are part of the placement contract:
/// changing them moves every room, so they never change.
const HRW_KEY0: u64 = 0x6361_7363_6164_6531; // "cascade1"
const HRW_KEY1: u64 = 0x7265_6e64_657a_766f; // "rendezvo"

/// One media server of a data centre.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    /// Stable identity used in the hash, e.g. `m1.example.test:443`.
    pub id: String,
    /// Base URL of the member's HTTP API, e.g. `https://m1.example.test`.
    pub url: String,
}

impl Member {
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Member {
            id: id.into(),
            url: url.into(),
        }
    }
}

/// The rendezvous score of `member_id` for `key` (a room id, or any other key).
///
/// SipHash-1-3 with fixed keys over the length-prefixed key followed by the member
/// id: the same inputs give the same score in every process, on every platform and
/// in every version (std's `RandomState` is seeded per process and is never used here).
pub fn score(key: &str, member_id: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(HRW_KEY0, HRW_KEY1);
    h.write(&(key.len() as u64).to_le_bytes());
    h.write(key.as_bytes());
    h.write(member_id.as_bytes());
    h.finish()
}

/// Orders `items` by rendezvous score for `key`, highest first; equal scores (in
/// practice never) fall back to the id, so the order is total and deterministic.
pub fn rank_by<'a, T>(key: &str, items: &'a [T], id: impl Fn(&T) -> &str) -> Vec<&'a T> {
    let mut scored: Vec<(u64, &'a T)> = items.iter().map(|m| (score(key, id(m)), m)).collect();
    scored.sort_by(|(sa, a), (sb, b)| sb.cmp(sa).then_with(|| id(a).cmp(id(b))));
    scored.into_iter().map(|(_, m)| m).collect()
}

/// Every member, in HRW order for `room` (the owner first).
pub fn rank<'a>(room: &str, members: &'a [Member]) -> Vec<&'a Member> {
    rank_by(room, members, |m| m.id.as_str())
}

/// The member that owns `room`: the highest HRW score. `None` with no members.
pub fn owner<'a>(room: &str, members: &'a [Member]) -> Option<&'a Member> {
    members
        .iter()
        .map(|m| (score(room, &m.id), m))
        .max_by(|(sa, a), (sb, b)| sa.cmp(sb).then_with(|| b.id.cmp(&a.id)))
        .map(|(_, m)| m)
}

/// Where a new session of `room` goes: the first member in HRW order that is not
/// full. `None` when every member is full (or there are none).
pub fn place<'a>(
    room: &str,
    members: &'a [Member],
    is_full: impl Fn(&Member) -> bool,
) -> Option<&'a Member> {
    rank(room, members).into_iter().find(|m| !is_full(m))
}

/// Where the member list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipSource {
    /// A fixed list.
    Static(Vec<Member>),
    /// The SRV records of `name`, asked of the DNS server at `resolver`.
    Srv { name: String, resolver: SocketAddr },
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
}

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
        let MembershipSource::Srv { name, resolver } = &self.source else {
            return MAX_REFRESH;
        };
        match resolve_srv(name, *resolver).await {
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
/// when the answer carries it): `http://target` for port 80, `https://target` for
/// 443, `https://target:port` otherwise.
pub fn member_url(target: &str, port: u16) -> String {
    match port {
        80 => format!("http://{target}"),
        443 => format!("https://{target}"),
        _ => format!("https://{target}:{port}"),
    }
}

/// Asks `resolver` for the SRV records of `name` (UDP, then TCP when the answer is
/// truncated). A name with no records (NXDOMAIN or no data) is an empty member list.
pub async fn resolve_srv(name: &str, resolver: SocketAddr) -> anyhow::Result<SrvAnswer> {
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
                url: member_url(&host, srv.port),
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
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (1..=n)
            .map(|i| {
                Member::new(
                    format!("m{i}.example.test:443"),
                    format!("https://m{i}.example.test"),
                )
            })
            .collect()
    }

    /// Reference SipHash-1-3 (c=1, d=3) written out from the algorithm's definition,
    /// to pin [`score`] to the definition rather than to one crate's behaviour.
    fn siphash13_reference(k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
        let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
        let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
        let mut v3 = k1 ^ 0x7465_6462_7974_6573;
        let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
            *v0 = v0.wrapping_add(*v1);
            *v1 = v1.rotate_left(13);
            *v1 ^= *v0;
            *v0 = v0.rotate_left(32);
            *v2 = v2.wrapping_add(*v3);
            *v3 = v3.rotate_left(16);
            *v3 ^= *v2;
            *v0 = v0.wrapping_add(*v3);
            *v3 = v3.rotate_left(21);
            *v3 ^= *v0;
            *v2 = v2.wrapping_add(*v1);
            *v1 = v1.rotate_left(17);
            *v1 ^= *v2;
            *v2 = v2.rotate_left(32);
        };
        let mut chunks = msg.chunks_exact(8);
        for c in &mut chunks {
            let m = u64::from_le_bytes(c.try_into().unwrap());
            v3 ^= m;
            round(&mut v0, &mut v1, &mut v2, &mut v3);
            v0 ^= m;
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        last[7] = msg.len() as u8;
        let m = u64::from_le_bytes(last);
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
        v2 ^= 0xff;
        for _ in 0..3 {
            round(&mut v0, &mut v1, &mut v2, &mut v3);
        }
        v0 ^ v1 ^ v2 ^ v3
    }

    #[test]
    fn score_is_siphash13_of_the_length_prefixed_key_and_id() {
        for (room, id) in [
            ("", ""),
            ("demo", "m1.example.test:443"),
            (
                "a-much-longer-room-name-with-more-than-sixteen-bytes",
                "m2:1",
            ),
            ("ümlaut", "m3.example.test:8443"),
        ] {
            let mut msg = (room.len() as u64).to_le_bytes().to_vec();
            msg.extend_from_slice(room.as_bytes());
            msg.extend_from_slice(id.as_bytes());
            assert_eq!(
                score(room, id),
                siphash13_reference(HRW_KEY0, HRW_KEY1, &msg),
                "{room:?} {id:?}"
            );
        }
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }

    #[test]
    fn same_inputs_same_owner_whatever_the_member_order() {
        let ms = members(5);
        let mut reversed = ms.clone();
        reversed.reverse();
        for i in 0..200 {
            let room = format!("room-{i}");
            let a = owner(&room, &ms).unwrap();
            let b = owner(&room, &reversed).unwrap();
            assert_eq!(a, b);
            assert_eq!(rank(&room, &ms), rank(&room, &reversed));
            assert_eq!(rank(&room, &ms)[0], a);
            assert_eq!(rank(&room, &ms).len(), 5);
        }
        assert!(owner("x", &[]).is_none());
        assert!(rank("x", &[]).is_empty());
    }

    #[test]
    fn rooms_spread_over_members() {
        let ms = members(4);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let o = owner(&format!("room-{i}"), &ms).unwrap();
            counts[ms.iter().position(|m| m == o).unwrap()] += 1;
        }
        for c in counts {
            assert!((800..=1200).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn adding_a_member_moves_about_a_quarter_only_to_it() {
        let three = members(3);
        let four = members(4);
        let new = &four[3];
        let mut moved = 0;
        for i in 0..1000 {
            let room = format!("room-{i}");
            let before = owner(&room, &three).unwrap();
            let after = owner(&room, &four).unwrap();
            if before != after {
                moved += 1;
                assert_eq!(after, new, "{room} moved to an old member");
            }
        }
        assert!((150..=350).contains(&moved), "moved {moved} of 1000");
    }

    #[test]
    fn removing_a_member_moves_only_its_rooms() {
        let four = members(4);
        let three: Vec<Member> = four
            .iter()
            .filter(|m| m.id != four[1].id)
            .cloned()
            .collect();
        for i in 0..1000 {
            let room = format!("room-{i}");
            let before = owner(&room, &four).unwrap();
            let after = owner(&room, &three).unwrap();
            if before.id != four[1].id {
                assert_eq!(before, after, "{room} moved though its owner stayed");
            } else {
                // It goes to its second choice.
                assert_eq!(after, rank(&room, &four)[1]);
            }
        }
    }

    #[test]
    fn spill_over_follows_hrw_order() {
        let ms = members(4);
        for i in 0..100 {
            let room = format!("room-{i}");
            let order = rank(&room, &ms);
            assert_eq!(place(&room, &ms, |_| false), Some(order[0]));
            let full0 = order[0].id.clone();
            assert_eq!(place(&room, &ms, |m| m.id == full0), Some(order[1]));
            let full: Vec<String> = order[..3].iter().map(|m| m.id.clone()).collect();
            assert_eq!(place(&room, &ms, |m| full.contains(&m.id)), Some(order[3]));
            assert_eq!(place(&room, &ms, |_| true), None);
        }
    }

    #[test]
    fn fixed_membership() {
        let m = Membership::fixed(members(3));
        assert_eq!(m.members().len(), 3);
        assert_eq!(m.owner("demo").as_ref(), owner("demo", &members(3)));
    }

    #[test]
    fn member_urls() {
        assert_eq!(member_url("m1.x", 443), "https://m1.x");
        assert_eq!(member_url("m1.x", 80), "http://m1.x");
        assert_eq!(member_url("m1.x", 8443), "https://m1.x:8443");
    }
}
