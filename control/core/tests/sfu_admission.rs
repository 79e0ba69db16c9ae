//! Session caps of the SFU core without sockets: per server, per token subject and
//! per source address; a session that ends in any way stops counting.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cascade_core::error::ErrorKind;
use cascade_core::sfu::{Client, SessionLimits, Sfu};
use cascade_peer::{ClientPeer, PeerRole};

use common::{server, start};

fn sfu(now: Instant, limits: SessionLimits) -> Sfu {
    let mut s = server("127.0.0.1:8443", "http://127.0.0.1:8080", now, 3);
    s.set_limits(limits);
    s
}

fn offer() -> String {
    ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 5,
            video_ssrc: 7,
        },
        &[],
    )
    .unwrap()
    .offer()
}

fn client(subject: &str, ip: &str) -> Client {
    Client::new(subject, Some(ip.parse::<IpAddr>().unwrap()))
}

#[test]
fn per_subject_and_per_source_caps_count_live_sessions() {
    let now = start();
    let mut sfu = sfu(
        now,
        SessionLimits {
            per_subject: Some(2),
            per_source: Some(3),
            ..SessionLimits::default()
        },
    );
    let a = client("alice", "192.0.2.1");
    let first = sfu.publish_for(now, "r", &a, &offer()).unwrap();
    sfu.publish_for(now, "r", &a, &offer()).unwrap();
    let err = sfu.publish_for(now, "r", &a, &offer()).unwrap_err();
    assert_eq!(
        (err.kind, err.code),
        (ErrorKind::TooManyRequests, "too_many_sessions_for_subject")
    );
    // Subscriptions count for the subject too.
    let err = sfu
        .subscribe_for(now, "r", &client("alice", "192.0.2.9"), &[], &offer())
        .unwrap_err();
    assert_eq!(err.code, "too_many_sessions_for_subject");
    // The address holds two of alice's; one more from bob, then it is full.
    sfu.publish_for(now, "r", &client("bob", "192.0.2.1"), &offer())
        .unwrap();
    let err = sfu
        .publish_for(now, "r", &client("carol", "192.0.2.1"), &offer())
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code),
        (ErrorKind::TooManyRequests, "too_many_sessions_from_address")
    );
    sfu.publish_for(now, "r", &client("carol", "192.0.2.2"), &offer())
        .unwrap();
    // A deleted session stops counting.
    sfu.delete(&first.resource).unwrap();
    sfu.publish_for(now, "r", &a, &offer()).unwrap();
    // So does one that never connected and was freed.
    sfu.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(sfu.session_count(), 0);
    let later = now + Duration::from_secs(31);
    sfu.publish_for(later, "r", &a, &offer()).unwrap();
    sfu.publish_for(later, "r", &a, &offer()).unwrap();
}

#[test]
fn server_caps_on_sessions_and_tracks() {
    let now = start();
    let mut sfu = sfu(
        now,
        SessionLimits {
            max_sessions: Some(2),
            ..SessionLimits::default()
        },
    );
    let c = client("u", "192.0.2.1");
    sfu.publish_for(now, "r", &c, &offer()).unwrap();
    sfu.publish_for(now, "r", &c, &offer()).unwrap();
    let err = sfu.publish_for(now, "r", &c, &offer()).unwrap_err();
    assert_eq!(
        (err.kind, err.code),
        (ErrorKind::Unavailable, "server_full")
    );

    // Two tracks per publisher.
    let mut sfu = self::sfu(
        now,
        SessionLimits {
            max_tracks: Some(3),
            ..SessionLimits::default()
        },
    );
    sfu.publish_for(now, "r", &c, &offer()).unwrap();
    sfu.publish_for(now, "r", &c, &offer()).unwrap();
    let err = sfu.publish_for(now, "r", &c, &offer()).unwrap_err();
    assert_eq!(err.code, "server_full");
    // Without limits, none of this is refused.
    let mut open = self::sfu(now, SessionLimits::default());
    for _ in 0..10 {
        open.publish_for(now, "r", &c, &offer()).unwrap();
    }
}
