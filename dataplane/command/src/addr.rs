//! The address a per-address limit counts, shared by control's session and
//! connection caps and the data plane's upcall budget: IPv4 as is (IPv4-mapped IPv6
//! as IPv4), IPv6 by its /64 (one subscriber line holds a whole /64).

use std::net::{IpAddr, Ipv6Addr};

/// The address `ip` is counted as.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        // An IPv4-compatible (not mapped) address stays IPv6.
        assert_ne!(
            address_key("::c000:201".parse().unwrap()),
            address_key("192.0.2.1".parse().unwrap())
        );
    }
}
