//! What `cascade serve` gives the Call Kit demo pages: `/call` and `/meeting` (and
//! their scripts), `/dev/config.json` (where signalling is), `/dev/token` (only on a
//! generated development secret), and a `cascade signal` in the same process under
//! `/signal` (on the development secret, or with `--signal-store`). Real processes,
//! real HTTP and WebSocket clients.

use std::process::Command;

use anyhow::Context;
use cascade_peer::{ClientPeer, PeerRole};
use cascade_tests::service::ServiceProcess;
use cascade_tests::signal::{connect_url, next_frame};
use cascade_tests::{
    ServerProcess, cascade_bin, http_client, parse_listening_line, random_room, require,
};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `cascade serve` with no token secret, as the README's run command starts it.
fn dev_server() -> anyhow::Result<(ServiceProcess, String)> {
    let mut cmd = Command::new(cascade_bin());
    cmd.args([
        "serve",
        "--http-listen",
        "127.0.0.1:0",
        "--media-listen",
        "127.0.0.1:0",
    ]);
    let (service, (base, _media)) =
        ServiceProcess::start(cmd, "cascade serve (development)", parse_listening_line)?;
    Ok((service, base))
}

async fn get(url: &str) -> anyhow::Result<(u16, String, String)> {
    let resp = http_client().get(url).send().await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, resp.text().await?))
}

async fn get_json(url: &str) -> anyhow::Result<(u16, Value)> {
    let (status, _, body) = get(url).await?;
    let json = serde_json::from_str(&body).with_context(|| format!("{url}: {body}"))?;
    Ok((status, json))
}

async fn dev_token(base: &str, user: &str, room: &str) -> anyhow::Result<String> {
    let (status, body) = get_json(&format!("{base}/dev/token?user={user}&room={room}")).await?;
    anyhow::ensure!(status == 200, "{status} {body}");
    Ok(body["token"].as_str().context("no token")?.to_owned())
}

/// Alice sends bob a message through the signal service at `url`; bob gets it.
async fn message_crosses(url: &str, alice_token: &str, bob_token: &str) -> anyhow::Result<()> {
    let (mut alice, _) = connect_url(url, alice_token, "alice", None).await?;
    let (mut bob, _) = connect_url(url, bob_token, "bob", Some(0)).await?;
    let send = json!({"type": "send", "id": "invite-1", "to": {"user": "bob"},
                      "body": {"call": "http://m1.example.test/rtc/v1/resources/x"}});
    alice.send(Message::Text(send.to_string().into())).await?;
    let accepted = next_frame(&mut alice, WAIT)
        .await?
        .context("alice's socket ended")?;
    anyhow::ensure!(accepted["type"] == "accepted", "{accepted}");
    let got = next_frame(&mut bob, WAIT)
        .await?
        .context("bob's socket ended")?;
    anyhow::ensure!(
        got["type"] == "message" && got["from"] == "alice" && got["id"] == "invite-1",
        "{got}"
    );
    Ok(())
}

#[tokio::test]
async fn a_development_server_serves_the_pages_tokens_and_signalling() -> anyhow::Result<()> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return Ok(());
    }
    let (_server, base) = dev_server()?;

    for (path, kind) in [
        ("/call", "text/html"),
        ("/call.js", "text/javascript"),
        ("/meeting", "text/html"),
        ("/meeting.js", "text/javascript"),
    ] {
        let (status, content_type, body) = get(&format!("{base}{path}")).await?;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!body.is_empty(), "{path} is empty");
    }

    let (status, config) = get_json(&format!("{base}/dev/config.json")).await?;
    assert_eq!(status, 200);
    assert_eq!(config["dev"], true, "{config}");
    let host = base.trim_start_matches("http://");
    let signal = format!("ws://{host}/signal/v1/connect");
    assert_eq!(config["signal"], signal.as_str(), "{config}");

    // A development token publishes on this server...
    let token = dev_token(&base, "alice", "r1").await?;
    let offer = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1,
            video_ssrc: 2,
        },
        &[],
    )?
    .offer();
    let resp = http_client()
        .post(format!("{base}/rtc/v1/rooms/r1/publish"))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);

    // ...and signals through the in-process `cascade signal`.
    let bob = dev_token(&base, "bob", "r1").await?;
    message_crosses(&signal, &token, &bob).await?;

    // Names are checked.
    let (status, body) = get_json(&format!("{base}/dev/token?user=a/b&room=r1")).await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = get_json(&format!("{base}/dev/token?user=alice")).await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    Ok(())
}

#[tokio::test]
async fn an_operator_secret_mints_no_tokens_and_names_its_signal_service() -> anyhow::Result<()> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return Ok(());
    }
    let url = "wss://signal.example.test/v1/connect";
    let server = ServerProcess::start(&["--signal-url", url])?;
    let (status, body) = get_json(&server.url("/dev/token?user=alice&room=r1")).await?;
    assert_eq!((status, body["code"].as_str()), (404, Some("dev_only")));
    let (status, config) = get_json(&server.url("/dev/config.json")).await?;
    assert_eq!(status, 200);
    assert_eq!(config, json!({"signal": url, "dev": false}));
    // No signal service in this process.
    let (status, _, _) = get(&server.url("/signal/health")).await?;
    assert_eq!(status, 404);
    // The pages are served all the same.
    let (status, _, _) = get(&server.url("/call")).await?;
    assert_eq!(status, 200);

    // Without --signal-url or --signal-store, the pages have no signalling.
    let bare = ServerProcess::start::<&str>(&[])?;
    let (_, config) = get_json(&bare.url("/dev/config.json")).await?;
    assert_eq!(config, json!({"signal": null, "dev": false}));
    Ok(())
}

#[tokio::test]
async fn signal_store_runs_cascade_signal_in_process_with_the_servers_secret() -> anyhow::Result<()>
{
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return Ok(());
    }
    let path = std::env::temp_dir().join(format!("{}.redb", random_room("demo-signal")));
    let store = path.to_str().context("utf-8 path")?;
    let server = ServerProcess::start(&["--signal-store", store])?;
    let (_, config) = get_json(&server.url("/dev/config.json")).await?;
    let host = server.http_base.trim_start_matches("http://");
    let signal = format!("ws://{host}/signal/v1/connect");
    assert_eq!(config, json!({"signal": signal, "dev": false}));
    let alice = server.token("any", "alice", &["subscribe"])?;
    let bob = server.token("any", "bob", &["subscribe"])?;
    message_crosses(&signal, &alice, &bob).await?;
    assert!(std::path::Path::new(store).is_file(), "no store at {store}");

    // A signal service elsewhere and one in this process exclude each other.
    let both =
        ServerProcess::start(&["--signal-store", store, "--signal-url", "ws://x/v1/connect"]);
    assert!(both.is_err(), "--signal-store with --signal-url started");
    drop(server);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
