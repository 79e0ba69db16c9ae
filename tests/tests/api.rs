//! The HTTP surface of a real `cascade serve`, without media: startup announcement,
//! health, metrics, demo page, room listing, JSON errors, CORS and shutdown.

use std::time::Duration;

use cascade_tests::{ServerProcess, cascade_bin, http_client, metric_in, random_room, require};
use serde_json::Value;

fn binary_present() -> bool {
    require(
        cascade_bin().is_file(),
        &format!(
            "the cascade binary at {} (run `cargo build -p cascade` or set CASCADE_BIN)",
            cascade_bin().display()
        ),
    )
}

fn server() -> anyhow::Result<ServerProcess> {
    let args: Vec<String> = match std::env::var("CASCADE_DATAPLANE") {
        Ok(d) if !d.is_empty() => vec!["--dataplane".into(), d],
        _ => Vec::new(),
    };
    ServerProcess::start(&args)
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
    if !binary_present() {
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

    // The demo link and the dev token follow the listening line.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.stdout_lines().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = server.stdout_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("demo page: http://") && l.contains("?room=demo&token=")),
        "stdout: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("dev token: ")),
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
        "cascade serve exited with {status} on SIGTERM"
    );
    Ok(())
}

#[tokio::test]
async fn room_listing_errors_and_cors() -> anyhow::Result<()> {
    if !binary_present() {
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
