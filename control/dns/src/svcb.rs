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

/// The protocols every media server offers on its HTTPS port, most preferred first.
pub const ALPN: [&str; 2] = ["h3", "h2"];

/// The HTTPS record data for a server reached at `target` (`.`: the owner name).
fn https_rdata(priority: u16, target: Name, server: &Server) -> RData {
    // Keys in ascending order (RFC 9460, section 2.2): alpn, port, ipv4hint/ipv6hint.
    let mut params = vec![
        (
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(ALPN.iter().map(|p| (*p).to_owned()).collect())),
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

/// HTTPS records at the zone name for `ranked` servers, best first.
pub fn zone_records<'z>(zone: &Zone, ranked: impl IntoIterator<Item = &'z Server>) -> Vec<Record> {
    ranked
        .into_iter()
        .take(zone.answers)
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

/// The HTTPS record at a server's own name.
pub fn server_record(zone: &Zone, server: &Server) -> Record {
    Record::from_rdata(
        server.host.clone(),
        zone.ttl,
        https_rdata(1, Name::root(), server),
    )
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
        let record = server_record(&zone, &zone.servers[0]);
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
}
