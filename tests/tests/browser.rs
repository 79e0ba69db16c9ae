//! Walking skeleton: a headless Chromium page publishes camera + microphone through the
//! demo page, a second page subscribes, and the subscriber decodes video and receives
//! audio; deleting both resources leaves the server with no session.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use cascade_tests::{
    ServerProcess, browser_dir, browser_prerequisites, browser_tools, chromium_path, random_room,
    wait_for_metric,
};
use serde_json::Value;

/// Subscriber goal: more than this many video frames decoded...
const MIN_FRAMES: u64 = 30;
/// ...within this long after subscribing.
const MEDIA_DEADLINE: Duration = Duration::from_secs(15);
/// Hard limit for the whole browser script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn u64_at(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

/// The browser environment alone (no server): Chromium starts headless, the fake
/// camera and microphone deliver media, and WebRTC decodes it over loopback. When this
/// fails, the problem is the machine, not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_environment_selftest() -> anyhow::Result<()> {
    if !browser_tools() {
        return Ok(());
    }
    let out = tokio::process::Command::new("node")
        .arg(browser_dir().join("pubsub.mjs"))
        .arg("--selftest")
        .current_dir(browser_dir())
        .env("CHROMIUM_PATH", chromium_path())
        .env("CASCADE_HARD_TIMEOUT_MS", "30000")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(45), out)
        .await
        .context("the selftest did not finish in time")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "selftest failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("selftest printed no JSON: {stdout}"))?;
    assert_eq!(report["ok"], true, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_publish_subscribe() -> anyhow::Result<()> {
    if !browser_prerequisites() {
        return Ok(());
    }
    let server = ServerProcess::start(&cascade_tests::dataplane_args())?;
    publish_subscribe_in_chromium(&server).await
}

/// The same publish/subscribe from Chromium while 300 slowloris connections (request
/// headers trickled one byte a second, from two addresses so the per-address cap is
/// not what stops them) hold the server's HTTP listener on its default timeouts:
/// `/healthz` answers throughout and the server closes every slow connection within
/// 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_publish_subscribe_under_slowloris() -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cascade_tests::slowloris::slow_connections;

    if !browser_prerequisites() {
        return Ok(());
    }
    let server = ServerProcess::start(&cascade_tests::dataplane_args())?;
    let addr = server
        .http_base
        .trim_start_matches("http://")
        .parse()
        .context("http_base is http://ip:port")?;
    let open = Arc::new(AtomicUsize::new(0));
    let close_within = Duration::from_secs(60);
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut slow = slow_connections(150, "127.0.0.2", addr, head, &open, close_within);
    slow.extend(slow_connections(
        150,
        "127.0.0.3",
        addr,
        head,
        &open,
        close_within,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::Relaxed) < 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open.load(Ordering::Relaxed), 300, "slow connections open");

    // Health is asked every 200 ms while the browser publishes and subscribes.
    let stop = Arc::new(AtomicUsize::new(0));
    let health = tokio::spawn({
        let url = server.url("/healthz");
        let stop = stop.clone();
        async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .expect("client");
            let mut slowest = Duration::ZERO;
            let mut answers = 0u32;
            while stop.load(Ordering::Relaxed) == 0 {
                let asked = std::time::Instant::now();
                let resp = client.get(&url).send().await.expect("/healthz answers");
                assert_eq!(resp.status(), 200);
                slowest = slowest.max(asked.elapsed());
                answers += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (answers, slowest)
        }
    });
    let during = open.load(Ordering::Relaxed);
    publish_subscribe_in_chromium(&server).await?;
    let still_open = open.load(Ordering::Relaxed);
    stop.store(1, Ordering::Relaxed);
    let (answers, slowest) = health.await?;
    eprintln!(
        "slow connections open at the start {during}, after the call {still_open}; \
         /healthz answered {answers} times, slowest {slowest:?}"
    );
    assert!(answers > 0);

    let mut closed_after = Vec::new();
    for s in slow {
        closed_after.push(s.await?.context("a slow connection stayed open 60 s")?);
    }
    let longest = closed_after.iter().max().copied().unwrap_or_default();
    eprintln!("the server closed all 300 slow connections, the last after {longest:?}");
    Ok(())
}

/// Publishes the fake camera and microphone from one Chromium page and subscribes
/// from another (`pubsub.mjs`), then checks the media, the room listing and that
/// both DELETEs leave the server with no session.
async fn publish_subscribe_in_chromium(server: &ServerProcess) -> anyhow::Result<()> {
    let room = random_room("browser");
    let pub_token = server.token(&room, "alice", &["publish", "subscribe"])?;
    let sub_token = server.token(&room, "bob", &["subscribe"])?;

    let script = browser_dir().join("pubsub.mjs");
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(browser_dir())
        .env("CASCADE_BASE_URL", &server.http_base)
        .env("CASCADE_ROOM", &room)
        .env("CASCADE_PUB_TOKEN", &pub_token)
        .env("CASCADE_SUB_TOKEN", &sub_token)
        .env(
            "CASCADE_DEADLINE_MS",
            MEDIA_DEADLINE.as_millis().to_string(),
        )
        .env("CASCADE_MIN_FRAMES", MIN_FRAMES.to_string())
        .env(
            "CASCADE_HARD_TIMEOUT_MS",
            SCRIPT_TIMEOUT.as_millis().to_string(),
        )
        .env("CHROMIUM_PATH", chromium_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run node {}", script.display()))?;
    let out = tokio::time::timeout(
        SCRIPT_TIMEOUT + Duration::from_secs(15),
        child.wait_with_output(),
    )
    .await
    .context("the browser script did not finish in time")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| {
            format!(
                "the browser script ({}) printed no JSON report\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status
            )
        })?;
    let pretty = serde_json::to_string_pretty(&report)?;
    let context = format!(
        "browser script report ({}):\n{pretty}\nscript stderr:\n{stderr}",
        out.status
    );
    eprintln!("{context}");

    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.is_empty(),
        "the browser script reported errors: {errors:?}\n{context}"
    );

    // Media: the goal within the deadline, from the samples themselves.
    let samples = report["samples"].as_array().cloned().unwrap_or_default();
    let reached = samples.iter().find(|s| {
        u64_at(s, "/video/framesDecoded") > MIN_FRAMES && u64_at(s, "/audio/packetsReceived") > 0
    });
    let reached = reached.with_context(|| {
        format!("the subscriber never decoded > {MIN_FRAMES} frames with audio\n{context}")
    })?;
    let at = Duration::from_millis(u64_at(reached, "/t_ms"));
    assert!(
        at <= MEDIA_DEADLINE,
        "the subscriber reached {MIN_FRAMES} frames only after {at:?}\n{context}"
    );
    assert!(
        u64_at(reached, "/video/frameWidth") > 0 && u64_at(reached, "/video/frameHeight") > 0,
        "decoded frames have no size\n{context}"
    );

    // The room listing showed the publication with its audio and video while it was live.
    let published = report["resources"]["publish"]
        .as_str()
        .context("no publish resource")?
        .to_string();
    let subscribed = report["resources"]["subscribe"]
        .as_str()
        .context("no subscribe resource")?
        .to_string();
    for url in [&published, &subscribed] {
        assert!(
            url.starts_with(&format!("{}/rtc/v1/resources/", server.http_base)),
            "resource {url} is not an absolute resource URL of {}",
            server.http_base
        );
    }
    assert_ne!(published, subscribed);
    let listing = &report["room_while_live"];
    assert_eq!(listing["room"], room.as_str(), "room listing: {listing}");
    let publications = listing["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let publication = publications
        .iter()
        .find(|p| p["resource"] == published.as_str())
        .with_context(|| format!("the room listing lacks {published}: {listing}"))?;
    assert_eq!(publication["user"], "alice", "room listing: {listing}");
    let mut kinds: Vec<&str> = publication["tracks"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["kind"].as_str()).collect())
        .unwrap_or_default();
    kinds.sort_unstable();
    assert_eq!(kinds, ["audio", "video"], "room listing: {listing}");

    // Both DELETEs succeeded...
    for who in ["subscriber", "publisher"] {
        let stops = report["stop"][who].as_array().cloned().unwrap_or_default();
        assert!(
            stops.len() == 1 && stops[0]["ok"] == true,
            "{who} DELETE: {stops:?}\n{context}"
        );
    }
    // ...and the server has no session left.
    let sessions = wait_for_metric(
        &server.http_base,
        "cascade_sessions",
        Duration::from_secs(5),
        |v| v == 0.0,
    )
    .await;
    assert!(
        sessions.is_ok(),
        "cascade_sessions is {:?} after both DELETEs, wanted 0",
        sessions.err().flatten()
    );
    let publications = wait_for_metric(
        &server.http_base,
        "cascade_publications",
        Duration::from_secs(5),
        |v| v == 0.0,
    )
    .await;
    assert!(
        publications.is_ok(),
        "cascade_publications is {:?} after both DELETEs, wanted 0",
        publications.err().flatten()
    );
    // Packets flowed through the server in both directions.
    let text = cascade_tests::metrics_text(&server.http_base).await?;
    for name in ["cascade_packets_in_total", "cascade_packets_out_total"] {
        let v = cascade_tests::metric_in(&text, name).unwrap_or(0.0);
        assert!(v > 0.0, "{name} is {v} after a call\n{text}");
    }
    Ok(())
}
