//! The bodies of `PATCH {resource}`, read the way the control server's handler reads
//! them (`control/src/api.rs`, `patch_resource`): `application/json` is parsed with
//! serde into [`SubscriptionPreferences`] and applied with [`Sfu::set_preferences`];
//! `application/trickle-ice-sdpfrag` must be UTF-8 and goes to [`Sfu::patch`]. Both
//! go to a live publication and a live subscription of a Chromium publisher and
//! subscriber.
//!
//! [`Sfu::set_preferences`]: cascade_core::sfu::Sfu::set_preferences
//! [`Sfu::patch`]: cascade_core::sfu::Sfu::patch

use cascade_core::sfu::SubscriptionPreferences;

use crate::fixtures::{self, CHROME_PUBLISH, CHROME_SUBSCRIBE};

/// The first byte picks the body type and the resource; the rest is the body.
pub fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let now = fixtures::epoch();
    let mut sfu = fixtures::sfu();
    let publication = sfu
        .publish(now, "room", "alice", &fixtures::crlf(CHROME_PUBLISH))
        .expect("the Chromium sample publishes")
        .resource;
    let subscription = sfu
        .subscribe(now, "room", &[], &fixtures::crlf(CHROME_SUBSCRIBE))
        .expect("the Chromium sample subscribes")
        .resource;
    fixtures::drain(&mut sfu);
    let id = if selector & 1 == 0 {
        &subscription
    } else {
        &publication
    };
    if selector & 2 == 0 {
        if let Ok(prefs) = serde_json::from_slice::<SubscriptionPreferences>(body) {
            let _ = sfu.set_preferences(now, id, &prefs);
        }
    } else if let Ok(frag) = std::str::from_utf8(body) {
        let _ = sfu.patch(now, id, frag);
    }
    fixtures::drain(&mut sfu);
    let _ = sfu.resource_info(id);
}
