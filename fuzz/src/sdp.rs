//! SDP through the SFU, as `POST /whip`, `POST /whep` and `PATCH` feed it: an offer
//! published, a second offer subscribed to the room, and a trickle/restart fragment
//! patched into both; every answer the SFU writes must parse back.

use std::borrow::Cow;
use std::time::Duration;

use cascade_core::sdp;

use crate::fixtures::{self, CHROME_SUBSCRIBE};

/// `data` holds up to three documents separated by 0xFF: the publish offer, the
/// subscribe offer (a Chromium subscriber when absent) and the PATCH fragment.
pub fn run(data: &[u8]) {
    let parts = crate::split_parts(data, 3);
    let text = |i: usize| parts.get(i).map(|p| String::from_utf8_lossy(p));
    let now = fixtures::epoch();
    let mut sfu = fixtures::sfu();
    let mut ids = Vec::new();

    let offer = text(0).unwrap_or_default();
    if let Ok(created) = sfu.publish(now, "room", "alice", &offer) {
        answer_parses(&created.answer);
        ids.push(created.resource);
    }
    let subscriber = fixtures::crlf(CHROME_SUBSCRIBE);
    let offer = text(1).unwrap_or(Cow::Borrowed(&subscriber));
    if let Ok(created) = sfu.subscribe(now, "room", &[], &offer) {
        answer_parses(&created.answer);
        ids.push(created.resource);
    }
    fixtures::drain(&mut sfu);
    if let Some(frag) = text(2) {
        for id in &ids {
            let _ = sfu.patch(now, id, &frag);
        }
    }
    for id in &ids {
        let _ = sfu.resource_info(id);
    }
    let _ = sfu.room_info("room");
    fixtures::drain(&mut sfu);
    sfu.handle_timeout(now + Duration::from_secs(1));
    fixtures::drain(&mut sfu);
    for id in &ids {
        let _ = sfu.delete(id);
    }
    fixtures::drain(&mut sfu);
    assert_eq!(sfu.session_count(), 0, "DELETE ends every session");
}

fn answer_parses(answer: &str) {
    if let Err(e) = sdp::parse(answer) {
        panic!("the SFU wrote an answer it cannot parse ({e}):\n{answer}");
    }
}
