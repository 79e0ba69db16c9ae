//! Room fan-out and presence.

use serde_json::{Value, json};

use crate::common::{Client, http, service_token, start};

fn presence(c: &Value, user: &str, online: bool) -> bool {
    c["type"] == "presence" && c["user"] == user && c["online"] == online
}

async fn join(c: &mut Client, room: &str) -> Value {
    c.send(json!({"type": "join", "room": room})).await;
    c.next_of("joined").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_reaches_every_other_member_once() {
    let server = start("rooms").await;
    let addr = server.addr;
    let (mut alice, _) = Client::connect(addr, "alice", 0).await;
    let (mut bob, _) = Client::connect(addr, "bob", 0).await;
    let (mut carol, _) = Client::connect(addr, "carol", 0).await;

    assert_eq!(join(&mut alice, "r").await["members"], json!(["alice"]));
    assert_eq!(
        join(&mut bob, "r").await["members"],
        json!(["alice", "bob"])
    );
    alice.next_where(|v| presence(v, "bob", true)).await;
    bob.next_where(|v| presence(v, "alice", true)).await;
    let joined = join(&mut carol, "r").await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "r", "members": ["alice", "bob", "carol"]})
    );
    for c in [&mut alice, &mut bob] {
        c.next_where(|v| presence(v, "carol", true)).await;
    }
    carol.next_where(|v| presence(v, "alice", true)).await;
    carol.next_where(|v| presence(v, "bob", true)).await;

    // A second connection of bob gets the room's messages too.
    let (mut bob2, _) = Client::connect(addr, "bob", 0).await;

    for id in ["hi", "fence"] {
        alice
            .send(json!({"type": "send", "id": id, "to": {"room": "r"}, "body": {"text": id}}))
            .await;
        let a = alice.next_of("accepted").await;
        assert_eq!(
            (a["id"].as_str(), a["duplicate"].as_bool()),
            (Some(id), Some(false))
        );
    }
    for c in [&mut bob, &mut bob2, &mut carol] {
        let m = c.next_of("message").await;
        assert_eq!((m["seq"].as_u64(), m["id"].as_str()), (Some(1), Some("hi")));
        assert_eq!(
            (m["from"].as_str(), m["room"].as_str()),
            (Some("alice"), Some("r"))
        );
        // The next one is the fence: "hi" came once.
        let m = c.next_of("message").await;
        assert_eq!(
            (m["seq"].as_u64(), m["id"].as_str()),
            (Some(2), Some("fence"))
        );
    }
    alice.round_trip().await;
    assert!(
        alice.unclaimed("message").is_empty(),
        "the sender's inbox does not get it"
    );

    // A backend posts to the room on nobody's behalf: every member gets it.
    let body = r#"{"from":"system","to":{"room":"r"},"id":"notice","body":"maintenance"}"#;
    let (status, resp) = http(addr, "POST", "/v1/messages", Some(&service_token()), body).await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(alice.next_of("message").await["id"], "notice");
    assert_eq!(carol.next_of("message").await["seq"], 3);

    // Presence follows connections: bob is online while one of his stays.
    bob2.close().await;
    bob.close().await;
    alice.next_where(|v| presence(v, "bob", false)).await;
    carol.next_where(|v| presence(v, "bob", false)).await;
    assert!(
        alice
            .unclaimed("presence")
            .iter()
            .all(|v| v["user"] != "bob" || v["online"] == true)
    );
    let (_bob, _) = Client::connect(addr, "bob", 0).await;
    alice.next_where(|v| presence(v, "bob", true)).await;

    // After leaving, carol gets no more and may not send to the room.
    carol.send(json!({"type": "leave", "room": "r"})).await;
    assert_eq!(carol.next_of("left").await["room"], "r");
    carol
        .send(json!({"type": "send", "id": "late", "to": {"room": "r"}, "body": 1}))
        .await;
    let e = carol.next_of("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("unknown_room"), Some("late"))
    );
    server.shutdown().await;
}
