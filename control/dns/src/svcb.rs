//! HTTPS records (RFC 9460, the HTTP form of SVCB) of the zone: they tell a client
//! before it connects that a media server speaks HTTP/3 and HTTP/2 (`alpn="h3,h2"`)
//! on which port, so it can open QUIC at once instead of learning `Alt-Svc` from a
//! first TCP response. Pure: built from the zone and a ranking, no I/O.
//!
//! - At the zone name: one ServiceMode record per ranked server (the same ranking as
//!   the zone's A/AAAA answers, both families, at most `answers`), priority 1 for the
//!   best, target `<name>.<zone>`, with the server's port and its address as a hint.
//! - At `<name>.<zone>`: one record, target `.` (the name itself), port and hint.

use std::net::IpAddr;

use hickory_server::proto::rr::rdata::svcb::{Alpn, IpHint, SVCB, SvcParamKey, SvcParamValue};
use hickory_server::proto::rr::rdata::{A, AAAA, HTTPS};
use hickory_server::proto::rr::{Name, RData, Record};

use super::zone::{Server, Zone};

/// The protocols a media server offers on its HTTPS port by default, most preferred
/// first (a zone's `alpn` per server changes them).
pub const ALPN: [&str; 2] = ["h3", "h2"];

/// The HTTPS record data for a server reached at `target` (`.`: the owner name).
fn https_rdata(priority: u16, target: Name, server: &Server) -> RData {
    // Keys in ascending order (RFC 9460, section 2.2): alpn, port, ipv4hint/ipv6hint.
    let mut params = vec![
        (
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(server.alpn.clone())),
        ),
        (SvcParamKey::Port, SvcParamValue::Port(server.port)),
    ];
    match server.address {
        IpAddr::V4(v4) => params.push((
            SvcParamKey::Ipv4Hint,
            SvcParamValue::Ipv4Hint(IpHint(vec![A(v4)])),
        )),
        IpAddr::V6(v6) => params.push((
            SvcParamKey::Ipv6Hint,
            SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(v6)])),
        )),
    }
    RData::HTTPS(HTTPS(SVCB::new(priority, target, params)))
}

/// The servers of `ranked` that have HTTPS records, at most the zone's `answers`.
pub fn with_records<'z>(
    zone: &Zone,
    ranked: impl IntoIterator<Item = &'z Server>,
) -> Vec<&'z Server> {
    ranked
        .into_iter()
        .filter(|s| !s.alpn.is_empty())
        .take(zone.answers)
        .collect()
}

/// HTTPS records at the zone name for `servers` ([`with_records`]), best first.
pub fn zone_records(zone: &Zone, servers: &[&Server]) -> Vec<Record> {
    servers
        .iter()
        .zip(1u16..)
        .map(|(server, priority)| {
            Record::from_rdata(
                zone.origin.clone(),
                zone.ttl,
                https_rdata(priority, server.host.clone(), server),
            )
        })
        .collect()
}

/// The HTTPS record at a server's own name, unless its `alpn` is empty.
pub fn server_record(zone: &Zone, server: &Server) -> Option<Record> {
    (!server.alpn.is_empty()).then(|| {
        Record::from_rdata(
            server.host.clone(),
            zone.ttl,
            https_rdata(1, Name::root(), server),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_server_gets_its_port_and_an_ipv6_hint() {
        let zone = Zone::parse(
            "zone = \"media.example.test\"\n[[server]]\nname = \"m6\"\naddress = \"2001:db8::6\"\nregion = \"eu\"\nport = 8443\n",
        )
        .unwrap();
        let record = server_record(&zone, &zone.servers[0]).unwrap();
        assert_eq!(record.name.to_string(), "m6.media.example.test.");
        let RData::HTTPS(HTTPS(svcb)) = &record.data else {
            panic!("not HTTPS: {record:?}");
        };
        assert_eq!(svcb.svc_priority, 1);
        assert!(svcb.target_name.is_root());
        let keys: Vec<SvcParamKey> = svcb.svc_params.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [SvcParamKey::Alpn, SvcParamKey::Port, SvcParamKey::Ipv6Hint]
        );
        assert_eq!(svcb.svc_params[1].1, SvcParamValue::Port(8443));
    }

    #[test]
    fn a_servers_alpn_is_its_own_and_an_empty_one_has_no_record() {
        let zone = Zone::parse(
            "zone = \"media.example.test\"\nanswers = 3\n\
             [[server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nregion = \"eu\"\n\
             [[server]]\nname = \"b\"\naddress = \"10.0.0.2\"\nregion = \"eu\"\nalpn = [\"h2\"]\n\
             [[server]]\nname = \"c\"\naddress = \"10.0.0.3\"\nregion = \"eu\"\nalpn = []\n",
        )
        .unwrap();
        let alpn = |r: &Record| match &r.data {
            RData::HTTPS(HTTPS(svcb)) => match &svcb.svc_params[0].1 {
                SvcParamValue::Alpn(Alpn(ids)) => ids.join(","),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let [a, b, c] = [&zone.servers[0], &zone.servers[1], &zone.servers[2]];
        assert_eq!(alpn(&server_record(&zone, a).unwrap()), "h3,h2");
        assert_eq!(alpn(&server_record(&zone, b).unwrap()), "h2");
        assert!(server_record(&zone, c).is_none());
        // At the zone name, c is skipped and the priorities stay 1, 2.
        let servers = with_records(&zone, [c, b, a]);
        let records = zone_records(&zone, &servers);
        let got: Vec<(u16, String)> = records
            .iter()
            .map(|r| match &r.data {
                RData::HTTPS(HTTPS(svcb)) => (svcb.svc_priority, svcb.target_name.to_string()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, "b.media.example.test.".to_owned()),
                (2, "a.media.example.test.".to_owned())
            ]
        );
        // A bad id is refused.
        let bad = Zone::parse(
            "zone = \"z.test\"\n[[server]]\nname = \"a\"\naddress = \"10.0.0.1\"\nregion = \"eu\"\nalpn = [\"h3,h2\"]\n",
        );
        assert!(bad.is_err());
    }
}
