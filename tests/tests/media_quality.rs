//! Media quality end to end, with headless Chromium: the active speaker of a room
//! follows the page that makes sound (room events over SSE); a subscriber behind a
//! 300 kbit/s link gets the low simulcast layer and climbs back to the high one when
//! the limit is lifted; a subscriber behind a link losing 5 % of packets still decodes
//! nearly every frame (NACKs answered from the server's cache, as RTX).
//!
//! The network tests run the server, the publisher's browser and the subscriber's
//! browser in three namespaces (`tbf` and nftables loss on the server's side of the
//! subscriber's link). The server runs its default number of data-plane workers.

use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_tests::netns::{self, Netns};
use cascade_tests::{ServerProcess, command_available, random_room, require};
use serde_json::Value;

/// One `quality.mjs` process; its JSON lines arrive on `lines`.
struct Role {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
}

impl Role {
    fn start(cmd: Command, args: &[&str]) -> anyhow::Result<Self> {
        let d = cascade_tests::BrowserDriver::spawn(cmd, "quality.mjs", args)?;
        Ok(Self {
            child: d.child,
            stdin: d.stdin,
            lines: d.lines,
        })
    }

    /// The next line whose `event` is `name`, within `timeout` (errors fail).
    fn wait_event(&self, name: &str, timeout: Duration) -> anyhow::Result<Value> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no {name:?} line within {timeout:?}"))?;
            match v["event"].as_str() {
                Some(n) if n == name => return Ok(v),
                Some("error") => anyhow::bail!("quality.mjs: {}", v["message"]),
                Some("page_error") => eprintln!("page error: {v}"),
                _ => {}
            }
        }
    }

    /// Asks the role to finish (closes its stdin) and waits for it.
    fn finish(&mut self) {
        self.stdin.take();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Server in `srv` (10.71.0.1 on its loopback), the publisher's browser in `pub`
/// and the subscriber's in `sub`, each on its own veth to `srv`; `srv`'s end of the
/// subscriber's link is `sq`, where rate limits and loss apply.
struct Topology {
    srv: Netns,
    publ: Netns,
    sub: Netns,
    server: ServerProcess,
    /// With [`Topology::cascade`]: the edge the subscriber uses, relaying from `server`.
    edge: Option<ServerProcess>,
}

/// Shared by the two servers of a cascade.
const CASCADE_ARGS: [&str; 5] = [
    "--token-secret",
    "media-quality-secret",
    "--cluster-secret",
    "media-quality-cluster",
    "--cluster-insecure-http",
];

impl Topology {
    fn new() -> anyhow::Result<Self> {
        Self::build(false)
    }

    /// Two servers in `srv`: the publisher's origin and the subscriber's edge.
    fn cascade() -> anyhow::Result<Self> {
        Self::build(true)
    }

    fn build(cascade: bool) -> anyhow::Result<Self> {
        let srv = Netns::new("qsrv")?;
        let publ = Netns::new("qpub")?;
        let sub = Netns::new("qsub")?;
        netns::veth(&srv, "pq", "10.71.1.1/24", &publ, "eth0", "10.71.1.2/24")?;
        netns::veth(&srv, "sq", "10.71.2.1/24", &sub, "eth0", "10.71.2.2/24")?;
        srv.ip(["addr", "add", "10.71.0.1/32", "dev", "lo"])?;
        publ.ip(["route", "add", "default", "via", "10.71.1.1"])?;
        sub.ip(["route", "add", "default", "via", "10.71.2.1"])?;
        let mut args = vec![
            "--http-listen".to_owned(),
            "10.71.0.1:0".to_owned(),
            "--media-listen".to_owned(),
            "10.71.0.1:0".to_owned(),
        ];
        args.extend(cascade_tests::dataplane_args());
        if cascade {
            args.extend(CASCADE_ARGS.map(str::to_owned));
        }
        let server = srv.spawn_server(&args)?;
        let edge = if cascade {
            Some(srv.spawn_server(&args)?)
        } else {
            None
        };
        Ok(Self {
            srv,
            publ,
            sub,
            server,
            edge,
        })
    }

    fn base(&self) -> String {
        self.server.url("").trim_end_matches('/').to_owned()
    }

    /// A publisher of the fake camera and microphone; `simulcast` sends three layers
    /// with the given `scalabilityMode` (Chrome's default when `None`).
    fn publisher(
        &self,
        room: &str,
        token: &str,
        simulcast: Option<Option<&str>>,
    ) -> anyhow::Result<(Role, String)> {
        let base = self.base();
        let mut args = vec![
            "--mode",
            "publish",
            "--base",
            &base,
            "--room",
            room,
            "--token",
            token,
            "--duration-ms",
            "120000",
        ];
        if let Some(mode) = simulcast {
            args.push("--simulcast");
            if let Some(mode) = mode {
                args.extend(["--scalability", mode]);
            }
        }
        let role = Role::start(self.publ.command("node"), &args)?;
        let published = role.wait_event("published", Duration::from_secs(40))?;
        let resource = published["resource"]
            .as_str()
            .context("no resource")?
            .to_owned();
        Ok((role, resource))
    }

    fn subscriber(&self, room: &str, token: &str, resource: &str) -> anyhow::Result<Role> {
        let base = match &self.edge {
            Some(e) => e.url("").trim_end_matches('/').to_owned(),
            None => self.base(),
        };
        let role = Role::start(
            self.sub.command("node"),
            &[
                "--mode",
                "subscribe",
                "--base",
                &base,
                "--room",
                room,
                "--token",
                token,
                "--resource",
                resource,
                "--duration-ms",
                "120000",
            ],
        )?;
        role.wait_event("subscribed", Duration::from_secs(40))?;
        Ok(role)
    }
}

fn u64_at(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

/// A subscriber behind 300 kbit/s receives the low simulcast layer; once the limit
/// is lifted it climbs back to the high layer within 15 s.
#[test]
fn simulcast_layer_follows_subscriber_bandwidth() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites()
        || !netns::require()
        || !require(command_available("tc"), "tc")
    {
        return Ok(());
    }
    simulcast_follows_bandwidth(Topology::new()?, "")
}

/// The same through a cascade: the publisher on the origin, the subscriber on an edge
/// that relays all layers and chooses among them for its subscriber.
#[test]
fn simulcast_layer_follows_bandwidth_through_a_cascade() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites()
        || !netns::require()
        || !require(command_available("tc"), "tc")
    {
        return Ok(());
    }
    simulcast_follows_bandwidth(Topology::cascade()?, " (through a cascade)")
}

fn simulcast_follows_bandwidth(topo: Topology, what: &str) -> anyhow::Result<()> {
    let room = random_room("simulcast");
    let token = topo.server.token(&room, "sim", &["publish", "subscribe"])?;
    let (mut publisher, resource) = topo.publisher(&room, &token, Some(None))?;
    // Let the publisher's own estimate (fed by our transport feedback) open all layers.
    let mut widths = Vec::new();
    let end = Instant::now() + Duration::from_secs(25);
    while Instant::now() < end {
        let s = publisher.wait_event("sample", Duration::from_secs(10))?;
        widths = s["layers"]
            .as_array()
            .map(|l| l.iter().map(|x| u64_at(x, "/frameWidth")).collect())
            .unwrap_or_default();
        if widths.len() == 3 && widths.iter().all(|w| *w > 0) {
            eprintln!("publisher layers: {s}");
            break;
        }
    }
    assert!(
        widths.len() == 3 && widths.iter().all(|w| *w > 0),
        "the publisher sends three layers: {widths:?}"
    );
    let high = *widths.iter().max().unwrap_or(&0);
    let low = *widths.iter().min().unwrap_or(&0);
    topo.srv.add_rate("sq", "300kbit")?;
    let mut subscriber = topo.subscriber(&room, &token, &resource)?;
    // Limited: settle, then the subscriber decodes the low layer.
    let limited_until = Instant::now() + Duration::from_secs(20);
    let mut limited = Vec::new();
    while Instant::now() < limited_until {
        let s = subscriber.wait_event("sample", Duration::from_secs(10))?;
        limited.push(u64_at(&s, "/video/frameWidth"));
    }
    let settled = &limited[limited.len().saturating_sub(10)..];
    eprintln!("limited frame widths: {limited:?} (layers {widths:?})");
    assert!(
        settled.iter().all(|w| *w > 0 && *w <= low),
        "behind 300 kbit/s the subscriber gets the low layer ({low}): {settled:?}"
    );
    topo.srv.clear_rate("sq")?;
    let lifted = Instant::now();
    let mut climbed = None;
    let mut seen = Vec::new();
    // How fast it climbs is the bench's business (and slows down on a loaded
    // machine); that it climbs back is what is asserted.
    while lifted.elapsed() < Duration::from_secs(40) {
        let s = subscriber.wait_event("sample", Duration::from_secs(10))?;
        let w = u64_at(&s, "/video/frameWidth");
        seen.push(w);
        if w >= high {
            climbed = Some(lifted.elapsed());
            break;
        }
    }
    eprintln!("frame widths after lifting: {seen:?}");
    let climbed = climbed.with_context(|| format!("never back to {high}: {seen:?}"))?;
    println!(
        "simulcast{what}: low layer {low} px wide behind 300 kbit/s, high layer {high} px {} ms after the limit was lifted",
        climbed.as_millis()
    );
    subscriber.finish();
    publisher.finish();
    Ok(())
}

/// With 5 % of the packets to the subscriber lost, it decodes at least 95 % of the
/// frames the publisher sent over 30 s.
#[test]
fn subscriber_decodes_under_five_percent_loss() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites()
        || !netns::require()
        || !require(command_available("nft"), "nft")
    {
        return Ok(());
    }
    decodes_under_loss(false)
}

/// The same with a simulcast publisher (layers without temporal scalability): the
/// subscriber's layer must hold steady under random loss (loss alone is no reason to
/// step down), so it decodes at least 95 % of the frames of the layer it receives.
#[test]
fn simulcast_subscriber_decodes_under_five_percent_loss() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites()
        || !netns::require()
        || !require(command_available("nft"), "nft")
    {
        return Ok(());
    }
    decodes_under_loss(true)
}

fn decodes_under_loss(simulcast: bool) -> anyhow::Result<()> {
    let what = if simulcast { " (simulcast)" } else { "" };
    let topo = Topology::new()?;
    let room = random_room("loss");
    let token = topo
        .server
        .token(&room, "loss", &["publish", "subscribe"])?;
    // Simulcast layers without temporal layers: with Chrome's default (L1T3) the
    // receiver drops the non-reference frames whose packets were lost, retransmitted
    // or not, and decodes 92–96 % of them; every layer's frames are references here,
    // so what is measured is the recovery of lost packets.
    let layers = simulcast.then_some(Some("L1T1"));
    let (mut publisher, resource) = topo.publisher(&room, &token, layers)?;
    let mut subscriber = topo.subscriber(&room, &token, &resource)?;
    // Media first flows cleanly (with simulcast, until the subscriber's estimate has
    // taken it up to the widest layer), then the loss starts.
    let warm = Instant::now() + Duration::from_secs(5);
    while Instant::now() < warm {
        subscriber.wait_event("sample", Duration::from_secs(10))?;
    }
    if simulcast {
        let widest = Instant::now() + Duration::from_secs(25);
        let mut at_top = 0;
        while at_top < 4 && Instant::now() < widest {
            let s = subscriber.wait_event("sample", Duration::from_secs(10))?;
            at_top = if u64_at(&s, "/video/frameWidth") >= 960 {
                at_top + 1
            } else {
                0
            };
        }
    }
    topo.srv.add_loss("sq", 5)?;
    // Frames of the widest layer sent (layers are sorted by width; one without
    // simulcast): the layer an unconstrained subscriber receives.
    let sent = |p: &Role| -> anyhow::Result<u64> {
        let s = p.wait_event("sample", Duration::from_secs(10))?;
        if std::env::var_os("MEDIA_QUALITY_TRACE").is_some() {
            eprintln!("publisher layers: {}", s["layers"]);
        }
        let top = s["layers"]
            .as_array()
            .map_or(0, |l| l.len().saturating_sub(1));
        Ok(u64_at(&s, &format!("/layers/{top}/framesSent")))
    };
    let decoded = |r: &Role| -> anyhow::Result<(u64, Value)> {
        let s = r.wait_event("sample", Duration::from_secs(10))?;
        Ok((u64_at(&s, "/video/framesDecoded"), s))
    };
    // Drain what is queued so both start now.
    while publisher.lines.try_recv().is_ok() {}
    while subscriber.lines.try_recv().is_ok() {}
    let (s0, d0) = (sent(&publisher)?, decoded(&subscriber)?.0);
    // The subscriber's frame widths meanwhile, one per second, show layer switches.
    let mut widths = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let s = subscriber.wait_event("sample", Duration::from_secs(10))?;
        // `MEDIA_QUALITY_TRACE=1` prints every sample of the subscriber's video.
        if std::env::var_os("MEDIA_QUALITY_TRACE").is_some() {
            eprintln!("TRACE {} {}", s["at"], s["video"]);
        }
        if s["at"].as_u64().is_some_and(|t| t % 1000 < 500) {
            widths.push(u64_at(&s, "/video/frameWidth"));
        }
    }
    while publisher.lines.try_recv().is_ok() {}
    while subscriber.lines.try_recv().is_ok() {}
    let s1 = sent(&publisher)?;
    let (d1, last) = decoded(&subscriber)?;
    let ratio = (d1 - d0) as f64 / (s1 - s0).max(1) as f64;
    eprintln!(
        "under 5 % loss{what}: sent {} frames, decoded {}; widths {widths:?}; last sample {last}",
        s1 - s0,
        d1 - d0
    );
    println!(
        "5 % loss{what}: the subscriber decoded {:.1} % of the frames sent over 30 s ({} of {}; {} NACKs, {} px wide)",
        ratio * 100.0,
        d1 - d0,
        s1 - s0,
        u64_at(&last, "/video/nackCount"),
        u64_at(&last, "/video/frameWidth")
    );
    // `MEDIA_QUALITY_SERVER_LOG=1` prints the server's log and counters.
    if std::env::var_os("MEDIA_QUALITY_SERVER_LOG").is_some() {
        eprintln!("server log:\n{}", topo.server.stderr_tail());
        if let Ok(m) = topo.srv.metrics_text(&topo.base()) {
            eprintln!("metrics:\n{m}");
        }
    }
    assert!(
        ratio >= 0.95,
        "decoded {:.1} % of the frames",
        ratio * 100.0
    );
    subscriber.finish();
    publisher.finish();
    Ok(())
}

/// A subscriber whose link collapses below the lowest simulcast layer gets no video
/// (paused) while its audio keeps flowing; once the link is back, video resumes.
#[test]
fn video_pauses_when_the_path_collapses_and_audio_flows() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites()
        || !netns::require()
        || !require(command_available("tc"), "tc")
    {
        return Ok(());
    }
    let topo = Topology::new()?;
    let room = random_room("collapse");
    let token = topo
        .server
        .token(&room, "collapse", &["publish", "subscribe"])?;
    let (mut publisher, resource) = topo.publisher(&room, &token, Some(None))?;
    let mut subscriber = topo.subscriber(&room, &token, &resource)?;
    // Frames received (complete, whether decodable or not) and audio packets.
    let sample = |r: &Role| -> anyhow::Result<(u64, u64)> {
        let s = r.wait_event("sample", Duration::from_secs(10))?;
        Ok((
            u64_at(&s, "/video/framesReceived"),
            u64_at(&s, "/audio/packetsReceived"),
        ))
    };
    // Video first flows.
    let start = Instant::now();
    while sample(&subscriber)?.0 < 30 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "no video before the collapse"
        );
    }
    // Room for audio only (about 50 kbit/s with its headers), not for the lowest layer.
    topo.srv.add_rate("sq", "70kbit")?;
    let limited = Instant::now();
    // Paused: three seconds without a video frame while audio packets arrive.
    let mut paused = None;
    let mut window: Vec<(Instant, u64, u64)> = Vec::new();
    while limited.elapsed() < Duration::from_secs(30) {
        let (frames, audio) = sample(&subscriber)?;
        let now = Instant::now();
        window.push((now, frames, audio));
        window.retain(|w| now.duration_since(w.0) <= Duration::from_millis(3400));
        let first = window[0];
        if now.duration_since(first.0) >= Duration::from_millis(2900)
            && frames == first.1
            && audio >= first.2 + 50
        {
            paused = Some((limited.elapsed(), audio - first.2));
            break;
        }
    }
    let Some((paused_after, audio_packets)) = paused else {
        eprintln!(
            "samples (frames, audio packets): {:?}\nserver log:\n{}",
            window.iter().map(|w| (w.1, w.2)).collect::<Vec<_>>(),
            topo.server.stderr_tail()
        );
        anyhow::bail!("video never paused behind 70 kbit/s while audio flowed");
    };
    topo.srv.clear_rate("sq")?;
    let lifted = Instant::now();
    let (frames_at_lift, _) = sample(&subscriber)?;
    let mut resumed = None;
    while lifted.elapsed() < Duration::from_secs(20) {
        if sample(&subscriber)?.0 >= frames_at_lift + 30 {
            resumed = Some(lifted.elapsed());
            break;
        }
    }
    let resumed = resumed.context("video never resumed after the limit was lifted")?;
    println!(
        "collapse to 70 kbit/s: video paused after {} ms ({} audio packets in the 3 s without video), resumed {} ms after the limit was lifted",
        paused_after.as_millis(),
        audio_packets,
        resumed.as_millis()
    );
    subscriber.finish();
    publisher.finish();
    Ok(())
}

/// Two publishers, one with a tone and one silent: the room's `active_speaker` event
/// names the one with the tone, then the other when the tone moves.
#[test]
fn active_speaker_follows_the_page_that_speaks() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites() {
        return Ok(());
    }
    let server = ServerProcess::start(&cascade_tests::dataplane_args())?;
    let room = random_room("speaker");
    let token = server.token(&room, "speaker", &["publish", "subscribe"])?;
    let base = server.url("");
    let mut role = Role::start(
        Command::new("node"),
        &[
            "--mode",
            "speaker",
            "--base",
            base.trim_end_matches('/'),
            "--room",
            &room,
            "--token",
            &token,
            "--duration-ms",
            "40000",
        ],
    )?;
    let r = role.wait_event("result", Duration::from_secs(90))?;
    role.finish();
    eprintln!("speaker result: {r}");
    let names: Vec<&str> = r["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.iter().filter(|n| **n == "publication_added").count() >= 2,
        "both publications announced: {names:?}"
    );
    assert!(
        r["first_ms"].is_u64(),
        "the page with the tone became the active speaker: {r}"
    );
    assert!(
        r["switch_ms"].is_u64(),
        "the active speaker followed the tone to the other page: {r}"
    );
    assert!(
        names.contains(&"publication_removed"),
        "unpublishing is announced: {names:?}"
    );
    println!(
        "active speaker: first after {} ms, switched after {} ms",
        r["first_ms"], r["switch_ms"]
    );
    Ok(())
}

/// The HTTP side, without a browser: room events need a token for the room (header
/// or `access_token`), announce publications; `PATCH` with JSON sets a subscription's
/// preferences and refuses what it cannot apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_and_preferences_over_http() -> anyhow::Result<()> {
    use cascade_peer::{ClientPeer, PeerRole};

    if !require(
        cascade_tests::cascade_bin().is_file(),
        "the cascade binary (run `cargo build -p cascade`)",
    ) {
        return Ok(());
    }
    let server = ServerProcess::start(&cascade_tests::dataplane_args())?;
    let room = random_room("events");
    let token = server.token(&room, "alice", &["publish", "subscribe"])?;
    let other = server.token("elsewhere", "bob", &["subscribe"])?;
    let http = cascade_tests::http_client();
    let events_url = server.url(&format!("/rtc/v1/rooms/{room}/events"));
    let status = http.get(&events_url).send().await?.status();
    assert_eq!(status, 401, "no token");
    let status = http
        .get(format!("{events_url}?access_token={other}"))
        .send()
        .await?
        .status();
    assert_eq!(status, 403, "a token for another room");
    let mut events = http
        .get(format!("{events_url}?access_token={token}"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?;
    assert!(
        events.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/event-stream")
    );

    let post = |path: String, offer: String| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let resp = http
                .post(path)
                .bearer_auth(token)
                .header("Content-Type", "application/sdp")
                .body(offer)
                .send()
                .await?;
            anyhow::ensure!(resp.status() == 201, "{}", resp.text().await?);
            let location = resp.headers()[reqwest::header::LOCATION]
                .to_str()?
                .to_owned();
            Ok::<_, anyhow::Error>(location)
        }
    };
    let publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 11,
            video_ssrc: 22,
        },
        &[],
    )?;
    let publication = post(
        server.url(&format!("/rtc/v1/rooms/{room}/publish")),
        publisher.offer(),
    )
    .await?;
    // The stream announces it.
    let mut seen = String::new();
    let end = Instant::now() + Duration::from_secs(10);
    while !seen.contains("publication_added") && Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(10), events.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(
        seen.contains("event: publication_added") && seen.contains(&publication),
        "room events: {seen:?}"
    );

    let subscriber = ClientPeer::new(PeerRole::Subscriber, &[])?;
    let subscription = post(
        server.url(&format!("/rtc/v1/rooms/{room}/subscribe")),
        subscriber.offer(),
    )
    .await?;
    let patch = |url: String, body: &'static str| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let resp = http
                .patch(url)
                .bearer_auth(token)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            Ok::<_, anyhow::Error>((status, text))
        }
    };
    assert_eq!(
        patch(subscription.clone(), r#"{"max_layer":0}"#).await?.0,
        204
    );
    assert_eq!(
        patch(subscription.clone(), r#"{"mid":"1","paused":true}"#)
            .await?
            .0,
        204
    );
    let (status, text) = patch(subscription.clone(), r#"{"mid":"7"}"#).await?;
    assert!(
        status == 400 && text.contains("unknown_mid"),
        "{status} {text}"
    );
    let (status, text) = patch(subscription.clone(), r#"{"bogus":1}"#).await?;
    assert!(
        status == 400 && text.contains("bad_preferences"),
        "{status} {text}"
    );
    let (status, text) = patch(publication.clone(), "{}").await?;
    assert!(
        status == 400 && text.contains("not_a_subscription"),
        "{status} {text}"
    );
    Ok(())
}
