//! DTLS: datagrams fed to a fresh endpoint (server, as the SFU plays it, or client),
//! which checks their record framing before OpenSSL sees them, then runs its timer.

use std::time::Duration;

use cascade_core::dtls::{DtlsEndpoint, DtlsRole};

use crate::fixtures;

/// The first byte picks the role; the rest is a sequence of datagrams, each a 2-byte
/// big-endian length and its bytes (the last one takes what is left).
pub fn run(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let role = if selector & 1 == 0 {
        DtlsRole::Server
    } else {
        DtlsRole::Client
    };
    let mut now = fixtures::epoch();
    let expected = fixtures::peer_cert().fingerprint().clone();
    let Ok(mut endpoint) = DtlsEndpoint::new(fixtures::server_cert(), role, expected, now) else {
        return;
    };
    while !rest.is_empty() {
        let datagram = match rest.split_first_chunk::<2>() {
            Some((len, tail)) if usize::from(u16::from_be_bytes(*len)) <= tail.len() => {
                let (d, tail) = tail.split_at(usize::from(u16::from_be_bytes(*len)));
                rest = tail;
                d
            }
            _ => std::mem::take(&mut rest),
        };
        let _ = endpoint.handle_receive(now, datagram);
        while endpoint.poll_transmit().is_some() {}
        while endpoint.poll_event().is_some() {}
        now += Duration::from_millis(700);
        let _ = endpoint.handle_timeout(now);
        let _ = endpoint.poll_timeout();
        let _ = endpoint.is_connected();
    }
    endpoint.close();
    while endpoint.poll_transmit().is_some() {}
}
