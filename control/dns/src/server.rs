//! The authoritative DNS side of `cascade dns`: a hickory-server request handler
//! that answers from the current zone, ranking and health (A/AAAA, SRV, HTTPS
//! records from [`super::svcb`], SOA/NS).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::DnsState;
use super::health::Health;
use super::rank::{Client, Family, rank, srv_members};
use super::svcb;
use super::zone::Zone;

/// UDP payload size announced in answers (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// What to answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// ECS scope prefix for the answer (0: it does not depend on the client).
    pub scope_prefix: u8,
}

impl Answer {
    fn new(code: ResponseCode) -> Self {
        Answer {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            scope_prefix: 0,
        }
    }

    /// No records of the asked type (or no such name): the SOA goes in the authority
    /// section so resolvers can cache the negative answer (RFC 2308).
    fn negative(zone: &Zone, code: ResponseCode) -> Self {
        let mut a = Answer::new(code);
        a.authorities.push(soa(zone));
        a
    }
}

fn soa(zone: &Zone) -> Record {
    let mname = zone
        .nameservers
        .first()
        .cloned()
        .unwrap_or_else(|| prefixed("ns", &zone.origin));
    let rname = prefixed("hostmaster", &zone.origin);
    Record::from_rdata(
        zone.origin.clone(),
        zone.ttl,
        RData::SOA(SOA::new(
            mname,
            rname,
            zone.serial,
            3600,
            600,
            86_400,
            zone.ttl,
        )),
    )
}

fn prefixed(label: &str, origin: &Name) -> Name {
    origin
        .prepend_label(label)
        .unwrap_or_else(|_| origin.clone())
}

fn address_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, rdata)
}

/// Answers `qname`/`qtype` (class IN) for `client` from `zone`. Pure: no I/O.
pub fn answer(
    zone: &Zone,
    health: &Health,
    qname: &Name,
    qtype: RecordType,
    client: Client,
) -> Answer {
    let mut qname = qname.to_lowercase();
    qname.set_fqdn(true);
    if !zone.origin.zone_of(&qname) {
        return Answer::new(ResponseCode::Refused);
    }
    let ttl = zone.ttl;

    if qname == zone.origin {
        let mut a = Answer::new(ResponseCode::NoError);
        let family = match qtype {
            RecordType::A => Some(Family::V4),
            RecordType::AAAA => Some(Family::V6),
            _ => None,
        };
        if let Some(family) = family {
            let ranking = rank(zone, health, client, family);
            a.scope_prefix = ranking.scope_prefix;
            for r in ranking.servers.iter().take(zone.answers) {
                a.answers
                    .push(address_record(&zone.origin, ttl, r.server.address));
            }
        } else if qtype == RecordType::HTTPS {
            let ranking = rank(zone, health, client, Family::Any);
            a.scope_prefix = ranking.scope_prefix;
            let servers = svcb::with_records(zone, ranking.servers.iter().map(|r| r.server));
            a.answers = svcb::zone_records(zone, &servers);
            for s in servers {
                a.additionals.push(address_record(&s.host, ttl, s.address));
            }
        } else if qtype == RecordType::SOA || qtype == RecordType::ANY {
            a.answers.push(soa(zone));
        } else if qtype == RecordType::NS {
            for ns in &zone.nameservers {
                a.answers.push(Record::from_rdata(
                    zone.origin.clone(),
                    ttl,
                    RData::NS(NS(ns.clone())),
                ));
            }
        }
        if a.answers.is_empty() {
            let scope = a.scope_prefix;
            a = Answer::negative(zone, ResponseCode::NoError);
            a.scope_prefix = scope;
        }
        return a;
    }

    if qname == zone.srv_name {
        if qtype != RecordType::SRV && qtype != RecordType::ANY {
            return Answer::negative(zone, ResponseCode::NoError);
        }
        let mut a = Answer::new(ResponseCode::NoError);
        for s in srv_members(zone, health) {
            a.answers.push(Record::from_rdata(
                zone.srv_name.clone(),
                ttl,
                RData::SRV(SRV::new(0, 1, s.port, s.host.clone())),
            ));
            a.additionals.push(address_record(&s.host, ttl, s.address));
        }
        return a;
    }

    if let Some(server) = zone.server_by_host(&qname) {
        if qtype == RecordType::HTTPS {
            let mut a = Answer::new(ResponseCode::NoError);
            a.answers.extend(svcb::server_record(zone, server));
            a.additionals
                .push(address_record(&qname, ttl, server.address));
            return a;
        }
        let matches = match qtype {
            RecordType::A => server.address.is_ipv4(),
            RecordType::AAAA => server.address.is_ipv6(),
            RecordType::ANY => true,
            _ => false,
        };
        if !matches {
            return Answer::negative(zone, ResponseCode::NoError);
        }
        let mut a = Answer::new(ResponseCode::NoError);
        a.answers.push(address_record(&qname, ttl, server.address));
        return a;
    }

    // A name above an existing one (`_tcp.<zone>` for `_cascade._tcp.<zone>`) exists
    // with no records of its own (RFC 8020): no data, not NXDOMAIN.
    let empty_non_terminal =
        qname.zone_of(&zone.srv_name) || zone.servers.iter().any(|s| qname.zone_of(&s.host));
    if empty_non_terminal {
        Answer::negative(zone, ResponseCode::NoError)
    } else {
        Answer::negative(zone, ResponseCode::NXDomain)
    }
}

/// The hickory-server handler.
#[derive(Debug, Clone)]
pub struct Handler {
    pub(super) state: Arc<DnsState>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;

        let request_ecs = request
            .edns
            .as_ref()
            .and_then(|e| match e.option(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(ecs)) => Some(*ecs),
                _ => None,
            });

        let (code, answer) = if request.metadata.op_code != OpCode::Query {
            (ResponseCode::NotImp, None)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            (ResponseCode::BADVERS, None)
        } else {
            match request.queries.queries() {
                [query] if matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) => {
                    let client = match request_ecs {
                        Some(ecs) if ecs.source_prefix() > 0 => {
                            Client::subnet(ecs.addr(), ecs.source_prefix())
                        }
                        _ => Client::address(request.src().ip()),
                    };
                    let zone = self.state.zone();
                    let qname = Name::from(query.name());
                    let a = answer(
                        &zone,
                        &self.state.health,
                        &qname,
                        query.query_type(),
                        client,
                    );
                    (a.code, Some(a))
                }
                [_] => (ResponseCode::Refused, None),
                _ => (ResponseCode::FormErr, None),
            }
        };
        metadata.response_code = code;
        metadata.authoritative = answer
            .as_ref()
            .is_some_and(|a| a.code != ResponseCode::Refused);

        // EDNS in the answer when the question had it (RFC 6891), with the client
        // subnet echoed and its scope set (RFC 7871 §7.2.1).
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            if let Some(ecs) = request_ecs {
                let scope = match (&answer, ecs.source_prefix()) {
                    (_, 0) | (None, _) => 0,
                    (Some(a), _) => a.scope_prefix,
                };
                edns.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(
                        ecs.addr(),
                        ecs.source_prefix(),
                        scope,
                    )));
            }
            edns
        });

        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let empty = Answer::new(code);
        let a = answer.as_ref().unwrap_or(&empty);
        let response = builder.build(
            metadata,
            a.answers.iter(),
            a.authorities.iter(),
            std::iter::empty(),
            a.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("cannot send a DNS answer: {e}");
                let mut failed = Metadata::response_from_request(&request.metadata);
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"
zone = "media.example.test"
ttl = 15
answers = 2
nameservers = ["ns1.example.test"]
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
port = 8443
[[server]]
name = "m4"
address = "10.2.0.2"
region = "us"
[regions]
"10.1.0.0/16" = "eu"
"10.2.0.0/16" = "us"
[latency]
eu.us = 90
"#;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn addrs(a: &Answer) -> Vec<IpAddr> {
        a.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_for_the_zone_name_ranks_by_region() {
        let zone = Zone::parse(ZONE).unwrap();
        let health = Health::default();
        let eu = Client::subnet("10.1.2.0".parse().unwrap(), 24);
        let a = answer(
            &zone,
            &health,
            &name("Media.Example.Test."),
            RecordType::A,
            eu,
        );
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(a.scope_prefix, 24);
        let mut got = addrs(&a);
        got.sort();
        assert_eq!(
            got,
            [
                "10.1.0.1".parse::<IpAddr>().unwrap(),
                "10.1.0.2".parse().unwrap()
            ]
        );
        assert!(a.answers.iter().all(|r| r.ttl == 15));

        let us = Client::address("10.2.0.200".parse().unwrap());
        let a = answer(
            &zone,
            &health,
            &name("media.example.test"),
            RecordType::A,
            us,
        );
        let mut got = addrs(&a);
        got.sort();
        assert_eq!(
            got,
            [
                "10.2.0.1".parse::<IpAddr>().unwrap(),
                "10.2.0.2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn srv_lists_every_server_with_addresses() {
        let zone = Zone::parse(ZONE).unwrap();
        let a = answer(
            &zone,
            &Health::default(),
            &name("_cascade._tcp.media.example.test."),
            RecordType::SRV,
            Client::address("127.0.0.1".parse().unwrap()),
        );
        let srv: Vec<(String, u16)> = a
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.target.to_ascii(), s.port)),
                _ => None,
            })
            .collect();
        assert_eq!(
            srv,
            [
                ("m1.media.example.test.".to_string(), 443),
                ("m2.media.example.test.".to_string(), 443),
                ("m3.media.example.test.".to_string(), 8443),
                ("m4.media.example.test.".to_string(), 443),
            ]
        );
        assert_eq!(a.additionals.len(), 4);
        assert_eq!(a.scope_prefix, 0);
    }

    #[test]
    fn hosts_negatives_and_other_zones() {
        let zone = Zone::parse(ZONE).unwrap();
        let h = Health::default();
        let c = Client::address("127.0.0.1".parse().unwrap());
        let a = answer(&zone, &h, &name("m3.media.example.test"), RecordType::A, c);
        assert_eq!(addrs(&a), ["10.2.0.1".parse::<IpAddr>().unwrap()]);
        let a = answer(
            &zone,
            &h,
            &name("m3.media.example.test"),
            RecordType::AAAA,
            c,
        );
        assert_eq!((a.code, a.answers.len()), (ResponseCode::NoError, 0));
        assert!(matches!(&a.authorities[0].data, RData::SOA(_)));
        let a = answer(
            &zone,
            &h,
            &name("nope.media.example.test"),
            RecordType::A,
            c,
        );
        assert_eq!(a.code, ResponseCode::NXDomain);
        assert!(matches!(&a.authorities[0].data, RData::SOA(_)));
        let a = answer(
            &zone,
            &h,
            &name("_tcp.media.example.test"),
            RecordType::A,
            c,
        );
        assert_eq!(a.code, ResponseCode::NoError);
        let a = answer(&zone, &h, &name("example.test"), RecordType::A, c);
        assert_eq!(a.code, ResponseCode::Refused);
        let a = answer(&zone, &h, &name("media.example.org"), RecordType::A, c);
        assert_eq!(a.code, ResponseCode::Refused);
        let a = answer(&zone, &h, &name("media.example.test"), RecordType::NS, c);
        assert_eq!(a.answers.len(), 1);
        let a = answer(&zone, &h, &name("media.example.test"), RecordType::MX, c);
        assert_eq!((a.code, a.answers.len()), (ResponseCode::NoError, 0));
    }
}
