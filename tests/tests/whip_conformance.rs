//! WHIP (RFC 9725) and WHEP conformance of a real `cascade serve` on what a standard
//! client relies on: the `ETag` of the ICE session on `201 Created`, `If-Match` on
//! `PATCH` (412 for another ICE session, `*` for an ICE restart, a new `ETag` after
//! one), and `200 OK` for `DELETE`.

use cascade_peer::{ClientPeer, PeerRole};
use cascade_tests::{ServerProcess, cascade_bin, http_client, random_room, require};

const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

fn server() -> Option<ServerProcess> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    Some(ServerProcess::start::<&str>(&[]).expect("server starts"))
}

/// The offer's `a=ice-ufrag`/`a=ice-pwd` values.
fn ice_credentials(sdp: &str) -> (String, String) {
    let attr = |name: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {sdp}"))
            .to_owned()
    };
    (attr("a=ice-ufrag:"), attr("a=ice-pwd:"))
}

/// POSTs `offer` to `path`; returns (status, Location, ETag).
async fn create(
    server: &ServerProcess,
    path: &str,
    token: &str,
    offer: &str,
) -> (u16, String, Option<String>) {
    let resp = http_client()
        .post(server.url(path))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .expect("POST");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, etag) = (header("location"), header("etag"));
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{path}: {body}");
    (status, location.expect("Location"), etag)
}

/// PATCHes `frag` with an optional `If-Match`; returns (status, ETag, JSON code).
async fn patch(
    resource: &str,
    token: &str,
    if_match: Option<&str>,
    frag: &str,
) -> (u16, Option<String>, String) {
    let mut req = http_client()
        .patch(resource)
        .bearer_auth(token)
        .header("content-type", SDPFRAG)
        .body(frag.to_owned());
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    let resp = req.send().await.expect("PATCH");
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await.unwrap_or_default();
    let code = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, etag, code)
}

#[tokio::test]
async fn etag_if_match_and_delete_follow_rfc_9725() {
    let Some(server) = server() else { return };
    let room = random_room("whip");
    let token = server.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 11,
            video_ssrc: 12,
        },
        &[],
    )
    .unwrap();
    let offer = publisher.offer();
    let (ufrag, pwd) = ice_credentials(&offer);

    // 201 carries a strong entity-tag for the ICE session (RFC 9725 §4.3.1).
    let (_, resource, etag) = create(
        &server,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        &offer,
    )
    .await;
    let etag = etag.expect("201 Created without ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "not a strong entity-tag: {etag}"
    );

    // Trickle ICE: the current tag matches (204, no ETag); another tag is a 412.
    let trickle = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    );
    let (status, tag, _) = patch(&resource, &token, Some(&etag), &trickle).await;
    assert_eq!((status, tag), (204, None), "trickle with the current tag");
    let (status, _, code) = patch(&resource, &token, Some("\"another-session\""), &trickle).await;
    assert_eq!((status, code.as_str()), (412, "ice_session_mismatch"));
    // A weak tag never matches (strong comparison, RFC 9110 §13.1.1).
    let (status, _, _) = patch(&resource, &token, Some(&format!("W/{etag}")), &trickle).await;
    assert_eq!(status, 412, "weak tag");
    // Without If-Match the fragment applies to the current session.
    let (status, _, _) = patch(&resource, &token, None, &trickle).await;
    assert_eq!(status, 204, "trickle without If-Match");

    // ICE restart with `If-Match: *`: 200, the new credentials and a new ETag.
    let restart = "a=ice-ufrag:newufrag1\r\na=ice-pwd:newpasswordnewpassword1\r\na=mid:0\r\n";
    let (status, new_tag, _) = patch(&resource, &token, Some("*"), restart).await;
    assert_eq!(status, 200, "ICE restart");
    let new_tag = new_tag.expect("200 of an ICE restart without ETag");
    assert_ne!(new_tag, etag, "the restart made a new ICE session");
    // The old session's tag no longer matches; the new one does.
    let trickle2 = "a=ice-ufrag:newufrag1\r\na=ice-pwd:newpasswordnewpassword1\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40001 typ host\r\n";
    let (status, _, code) = patch(&resource, &token, Some(&etag), trickle2).await;
    assert_eq!((status, code.as_str()), (412, "ice_session_mismatch"));
    let (status, _, _) = patch(&resource, &token, Some(&new_tag), trickle2).await;
    assert_eq!(status, 204);

    // WHEP: a subscription's 201 carries an ETag as well.
    let subscriber = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap();
    let (_, subscription, sub_tag) = create(
        &server,
        &format!("/rtc/v1/rooms/{room}/subscribe"),
        &token,
        &subscriber.offer(),
    )
    .await;
    assert!(sub_tag.is_some(), "WHEP 201 without ETag");

    // DELETE: 200 OK (RFC 9725 §4.2); an If-Match on it is ignored.
    for (url, if_match) in [(&subscription, None), (&resource, Some("\"stale\""))] {
        let mut req = http_client().delete(url).bearer_auth(&token);
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert_eq!(status, 200, "DELETE {url}");
    }
    // Gone now.
    let (status, _, code) = patch(&resource, &token, Some("*"), &trickle).await;
    assert!(status == 404 || status == 401, "{status} {code}");
}
