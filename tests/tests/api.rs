//! The HTTP surface of a real `cascade serve`, without media: startup announcement,
//! health, metrics, demo page, room listing, JSON errors, CORS and shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cascade_tests::{ServerProcess, cascade_bin, http_client, metric_in, random_room};
use serde_json::Value;

fn server() -> anyhow::Result<ServerProcess> {
    ServerProcess::start(&cascade_tests::dataplane_args())
}

/// Checks a JSON error body `{"code": .., "message": ..}` and returns its code.
async fn json_error(resp: reqwest::Response) -> anyhow::Result<String> {
    let status = resp.status();
    let body = resp.text().await?;
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("{status}: error body is not JSON ({e}): {body}"))?;
    let code = v["code"].as_str().unwrap_or_default().to_string();
    assert!(!code.is_empty(), "{status}: no code in {body}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{status}: no message in {body}"
    );
    Ok(code)
}

#[tokio::test]
async fn announces_itself_and_serves_health_metrics_and_demo_page() -> anyhow::Result<()> {
    if !cascade_tests::binary_present() {
        return Ok(());
    }
    let mut server = server()?;
    assert!(
        server.http_base.starts_with("http://127.0.0.1:"),
        "{}",
        server.http_base
    );
    assert_eq!(server.media_addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.media_addr.port(), 0);

    // The demo link follows the listening line; with an operator's secret, no dev
    // token (a token signed with that secret must not reach a log).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.stdout_lines().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = server.stdout_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("demo page: http://")),
        "stdout: {lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("token=") || l.contains("dev token")),
        "stdout: {lines:?}"
    );

    let client = http_client();
    let health = client.get(server.url("/healthz")).send().await?;
    assert_eq!(health.status(), 200);

    let page = client.get(server.url("/")).send().await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    assert!(
        html.contains("window.cascadeDemo"),
        "GET / is not the demo page"
    );

    let text = cascade_tests::metrics_text(&server.http_base).await?;
    assert_eq!(metric_in(&text, "cascade_sessions"), Some(0.0), "{text}");
    assert_eq!(
        metric_in(&text, "cascade_publications"),
        Some(0.0),
        "{text}"
    );
    for counter in [
        "cascade_packets_in_total",
        "cascade_packets_out_total",
        "cascade_bytes_in_total",
        "cascade_bytes_out_total",
    ] {
        assert!(
            metric_in(&text, counter).is_some(),
            "no {counter} in\n{text}"
        );
    }

    let status = server.stop()?;
    assert!(
        status.success(),
        "cascade serve exited with {status} on SIGINT"
    );
    Ok(())
}

#[tokio::test]
async fn room_listing_errors_and_cors() -> anyhow::Result<()> {
    if !cascade_tests::binary_present() {
        return Ok(());
    }
    let server = server()?;
    let room = random_room("api");
    let token = server.token(&room, "carol", &["publish", "subscribe"])?;
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let client = http_client();

    // An empty room.
    let resp = client
        .get(server.url(&format!("/rtc/v1/rooms/{room}")))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let listing: Value = resp.json().await?;
    assert_eq!(listing["room"], room.as_str(), "{listing}");
    assert_eq!(listing["publications"], serde_json::json!([]), "{listing}");

    // Publishing without a token is refused with a JSON error.
    let resp = client
        .post(server.url(&format!("/rtc/v1/rooms/{room}/publish")))
        .header("Content-Type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    json_error(resp).await?;

    // A token for another room is refused.
    let other = server.token(&random_room("other"), "carol", &["publish"])?;
    let resp = client
        .post(server.url(&format!("/rtc/v1/rooms/{room}/publish")))
        .header("Content-Type", "application/sdp")
        .bearer_auth(&other)
        .body("v=0\r\n")
        .send()
        .await?;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    json_error(resp).await?;

    // Garbage SDP with a good token is a 400.
    let resp = client
        .post(server.url(&format!("/rtc/v1/rooms/{room}/publish")))
        .header("Content-Type", "application/sdp")
        .bearer_auth(&token)
        .body("this is not sdp")
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    json_error(resp).await?;

    // Deleting a resource that does not exist is a client error.
    let resp = client
        .delete(server.url("/rtc/v1/resources/does-not-exist"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    json_error(resp).await?;

    // CORS preflight from another origin.
    let resp = client
        .request(
            reqwest::Method::OPTIONS,
            server.url(&format!("/rtc/v1/rooms/{room}/publish")),
        )
        .header("Origin", "http://example.test")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await?;
    assert!(resp.status().is_success(), "preflight: {}", resp.status());
    assert!(
        resp.headers().contains_key("access-control-allow-origin"),
        "preflight headers: {:?}",
        resp.headers()
    );
    Ok(())
}

/// Starts `cascade serve` with `args` (no harness defaults) and returns the stdout
/// lines it printed up to and including the first starting with `until`, or within
/// `limit`; the server is killed after.
fn stdout_until(args: &[&str], until: &str, limit: Duration) -> Vec<String> {
    let mut child = Command::new(cascade_bin())
        .arg("serve")
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--media-listen",
            "127.0.0.1:0",
        ])
        .args(["--ebpf", "off"])
        .args(args)
        .env_remove("CASCADE_TOKEN_SECRET")
        .env_remove("CASCADE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cascade serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with(until);
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn a_dev_token_only_for_a_generated_secret() {
    if !cascade_tests::binary_present() {
        return;
    }
    // No secret given: a dev secret is generated, and a token for it printed.
    let lines = stdout_until(&[], "dev token: ", Duration::from_secs(20));
    let token = lines
        .iter()
        .find_map(|l| l.strip_prefix("dev token: "))
        .unwrap_or_else(|| panic!("no dev token without --token-secret: {lines:?}"));
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("demo page: http://") && l.contains("?room=demo&token=")),
        "stdout: {lines:?}"
    );
    // A secret from the config file is an operator's secret: no token printed.
    let dir = std::env::temp_dir().join(format!("cascade-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(&config, "token_secrets = [\"k1:from-the-file\"]\n").unwrap();
    let lines = stdout_until(
        &["--config", config.to_str().unwrap()],
        "demo page: ",
        Duration::from_secs(20),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        lines.iter().any(|l| l.starts_with("demo page: ")),
        "stdout: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("eyJ")),
        "a token printed for a configured secret: {lines:?}"
    );
}

#[tokio::test]
async fn no_token_or_resource_id_in_the_output_of_a_configured_server() -> anyhow::Result<()> {
    if !cascade_tests::binary_present() {
        return Ok(());
    }
    let mut server = server()?;
    let room = random_room("logs");
    let token = server.token(&room, "dora", &["publish"])?;
    // A publication logs its creation and deletion at INFO.
    let offer = cascade_peer::ClientPeer::new(
        cascade_peer::PeerRole::Publisher {
            audio_ssrc: 31,
            video_ssrc: 32,
        },
        &[],
    )?
    .offer();
    let resp = http_client()
        .post(server.url(&format!("/rtc/v1/rooms/{room}/publish")))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let resource = resp.headers()["location"].to_str()?.to_owned();
    let id = resource.rsplit('/').next().unwrap_or_default().to_owned();
    let resp = http_client()
        .delete(&resource)
        .bearer_auth(&token)
        .send()
        .await?;
    assert!(resp.status().is_success());
    server.stop()?;
    let stdout = server.stdout_lines().join("\n");
    let stderr = server.stderr_tail();
    assert!(
        stderr.contains("publication created"),
        "the INFO log this test reads is missing: {stderr}"
    );
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        // Every JWT starts with the base64 of `{"`.
        assert!(!text.contains("eyJ"), "a token in {name}: {text}");
        assert!(
            !text.contains(&server.secret),
            "the secret in {name}: {text}"
        );
        assert!(!text.contains(&id), "resource id {id} in {name}: {text}");
    }
    Ok(())
}
