//! STUN: the header, a whole message with its attributes, the USERNAME shortcut used
//! for routing, MESSAGE-INTEGRITY and FINGERPRINT checks.

use cascade_core::stun;

/// Parses `data` as a STUN datagram and reads everything a parsed message offers.
pub fn run(data: &[u8]) {
    let header = stun::parse_header(data);
    let quick = stun::username(data);
    let Ok(msg) = stun::parse(data) else {
        return;
    };
    assert!(header.is_ok(), "a message parses only with a valid header");
    assert_eq!(
        quick,
        msg.username(),
        "routing and parsing agree on USERNAME"
    );
    let _ = msg.raw();
    let _ = msg.message_integrity();
    let _ = msg.message_integrity_offset();
    let _ = msg.fingerprint();
    let _ = msg.xor_mapped_address();
    let _ = msg.priority();
    let _ = msg.use_candidate();
    let _ = msg.ice_controlling();
    let _ = msg.ice_controlled();
    let _ = msg.error_code();
    let _ = msg.unknown_comprehension_required();
    let _ = msg.verify_integrity(b"fuzz-ice-password-0123456789");
    let _ = msg.verify_fingerprint();
}
