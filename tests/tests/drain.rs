//! Graceful drain with real `cascade serve` processes on loopback:
//!
//! - During a live call on server A (publisher and subscriber on A), SIGTERM drains
//!   A: `/healthz` turns 503 `draining` (and `cascade dns` takes A out of its
//!   answers), the subscriber keeps receiving media, a new subscriber of A's room
//!   lands on the next member B (cascading from A), and A exits 0 once its last
//!   session is deleted.
//! - Without placement, a draining server refuses a new publish with 503
//!   `draining` and `Retry-After`, and exits 0 at `--drain-deadline` with a session
//!   still live.
//! - `POST /admin/drain` needs the admin secret, and starts the same drain.
//! - `cascade probe` (the image's health check) fails while the server drains.
//! - A rolling restart of three servers, one after the other, drops no live call.

use std::time::{Duration, Instant};

use cascade_core::placement::{Member, member_from_url, rank};
use cascade_peer::PeerRole;
use cascade_tests::dc::{DnsProcess, ZoneFile};
use cascade_tests::media::LivePeer;
use cascade_tests::{
    ServerProcess, cascade_bin, free_port, http_client, metric, mint_token, random_room, require,
};

const SECRET: &str = "drain-test-users";
const CLUSTER: &str = "drain-test-cluster";
const ADMIN: &str = "drain-test-admin-secret";
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: 0x1111,
    video_ssrc: 0x2222,
};
/// How long a condition may take to show before a test fails.
const WITHIN: Duration = Duration::from_secs(15);

/// Polls `check` every 50 ms until it returns `Some` or [`WITHIN`] passes.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let end = Instant::now() + WITHIN;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET {base}/healthz`: its status and JSON `code` (if any).
async fn health(base: &str) -> (u16, Option<String>) {
    match http_client().get(format!("{base}/healthz")).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, body["code"].as_str().map(str::to_owned))
        }
        Err(_) => (0, None),
    }
}

async fn delete(resource: &str, token: &str) {
    let r = http_client()
        .delete(resource)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "DELETE {resource}");
}

async fn live(base: &str, room: &str, token: &str, role: PeerRole, video: Option<u32>) -> LivePeer {
    let kind = match role {
        PeerRole::Subscriber => "subscribe",
        _ => "publish",
    };
    LivePeer::connect_from(
        base,
        "127.0.0.1:0".parse().unwrap(),
        &format!("/rtc/v1/rooms/{room}/{kind}"),
        token,
        role,
        video,
    )
    .await
    .unwrap_or_else(|e| panic!("{kind} to {base}: {e:#}"))
}

fn start(args: &[String]) -> ServerProcess {
    let mut all: Vec<String> = ["--token-secret", SECRET].map(String::from).to_vec();
    all.extend_from_slice(args);
    ServerProcess::start(&all).expect("server starts")
}

/// `n` member URLs on free loopback ports, and their members.
fn member_urls(n: usize) -> (Vec<String>, Vec<Member>) {
    let urls: Vec<String> = (0..n)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let members = urls.iter().map(|u| member_from_url(u).unwrap()).collect();
    (urls, members)
}

/// The arguments of the member at `url` of a data centre of `urls`, cascading over
/// plain HTTP, with a drain deadline longer than any test.
fn member_args(url: &str, urls: &[String]) -> Vec<String> {
    [
        "--http-listen",
        url.trim_start_matches("http://"),
        "--cluster-secret",
        CLUSTER,
        "--cluster-insecure-http",
        "--members",
        &urls.join(","),
        "--drain-deadline",
        "120",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_keeps_its_call_sends_new_sessions_on_and_exits_after_the_last() {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let (urls, members) = member_urls(2);
    let mut servers: Vec<ServerProcess> =
        urls.iter().map(|u| start(&member_args(u, &urls))).collect();
    // `cascade dns` probes both servers' health.
    let zone = ZoneFile::new(&format!(
        "zone = \"drain.test\"\n\
         [[server]]\nname = \"a\"\naddress = \"10.9.0.1\"\nregion = \"eu\"\nhealth_url = \"{}/healthz\"\n\
         [[server]]\nname = \"b\"\naddress = \"10.9.0.2\"\nregion = \"eu\"\nhealth_url = \"{}/healthz\"\n",
        urls[0], urls[1]
    ))
    .unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let dns = DnsProcess::launch(
        std::process::Command::new(cascade_bin()),
        zone.path(),
        any,
        any,
        Duration::from_millis(200),
        "",
    )
    .unwrap();
    let dns_health = async |name: &str| -> Option<bool> {
        let list: serde_json::Value = http_client()
            .get(format!("{}/servers", dns.http_base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list["servers"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["healthy"].as_bool())
    };
    until("cascade dns sees a healthy", async || {
        (dns_health("a").await == Some(true)).then_some(())
    })
    .await;

    // A room A owns, and a call on A.
    let room = loop {
        let r = random_room("drain");
        if *rank(&r, &members)[0] == members[0] {
            break r;
        }
    };
    let token = mint_token(SECRET, &room, "u", &["publish", "subscribe"], None).unwrap();
    let (a, b) = (&servers[0].http_base.clone(), &servers[1].http_base.clone());
    let publisher = live(a, &room, &token, PUBLISHER, Some(0x2222)).await;
    let subscriber = live(a, &room, &token, PeerRole::Subscriber, None).await;
    assert!(
        publisher.resource.starts_with(a.as_str()),
        "{}",
        publisher.resource
    );
    assert!(
        subscriber.resource.starts_with(a.as_str()),
        "{}",
        subscriber.resource
    );
    until("media reaches the subscriber", async || {
        (subscriber.received() > 20).then_some(())
    })
    .await;

    servers[0].send_signal(libc::SIGTERM);
    let at_drain = subscriber.received();
    let (status, code) = until("A's /healthz turns 503", async || {
        let h = health(a).await;
        (h.0 != 200).then_some(h)
    })
    .await;
    assert_eq!((status, code.as_deref()), (503, Some("draining")));
    until("cascade dns takes A out", async || {
        (dns_health("a").await == Some(false)).then_some(())
    })
    .await;
    assert_eq!(dns_health("b").await, Some(true), "B stays healthy");

    // A new subscriber of A's room, asking B (which redirects to the owner A), is
    // spilled by the draining A to B, which cascades the call from A.
    let late = live(b, &room, &token, PeerRole::Subscriber, None).await;
    assert!(
        late.resource.starts_with(b.as_str()),
        "a new session for A's room while A drains: {}",
        late.resource
    );
    until("the late subscriber on B gets A's media", async || {
        (late.received() > 20).then_some(())
    })
    .await;
    // The live call on A goes on.
    until(
        "the subscriber on A keeps receiving while A drains",
        async || (subscriber.received() > at_drain + 200).then_some(()),
    )
    .await;
    assert!(servers[0].is_running(), "A exited with sessions left");

    // The call ends: A exits once its last session is gone, not before.
    let (sub_url, pub_url) = (subscriber.resource.clone(), publisher.resource.clone());
    drop(subscriber);
    drop(late);
    delete(&sub_url, &token).await;
    until("A has one session left", async || {
        (metric(a, "cascade_sessions").await == Some(1.0)).then_some(())
    })
    .await;
    assert!(
        servers[0].is_running(),
        "A exited with the publisher still live"
    );
    drop(publisher);
    delete(&pub_url, &token).await;
    let status = servers[0]
        .wait_exit(WITHIN)
        .unwrap()
        .expect("A exits once its last session ended");
    assert!(status.success(), "A exited with {status}");
    assert!(
        servers[0]
            .stderr_tail()
            .contains("drained: no session left"),
        "{}",
        servers[0].stderr_tail()
    );
}

/// A call: a publisher and a subscriber of one room, both on `server`.
struct Call {
    room: String,
    token: String,
    server: usize,
    publisher: LivePeer,
    subscriber: LivePeer,
}

/// A room that `members[owner]` owns.
fn room_owned_by(members: &[Member], owner: usize) -> String {
    loop {
        let r = random_room("rolling");
        if *rank(&r, members)[0] == members[owner] {
            break r;
        }
    }
}

/// Starts a call in `room` by asking `via`; the server that took it is read from the
/// resource URLs (both on the same one).
async fn call(bases: &[String], via: usize, room: String) -> Call {
    let token = mint_token(SECRET, &room, "u", &["publish", "subscribe"], None).unwrap();
    let publisher = live(&bases[via], &room, &token, PUBLISHER, Some(0x2222)).await;
    let server = bases
        .iter()
        .position(|b| publisher.resource.starts_with(b.as_str()))
        .unwrap_or_else(|| panic!("{} on no server", publisher.resource));
    let subscriber = live(&bases[server], &room, &token, PeerRole::Subscriber, None).await;
    Call {
        room,
        token,
        server,
        publisher,
        subscriber,
    }
}

/// Every call's subscriber receives at least 100 more packets.
async fn all_flow(calls: &[Call], what: &str) {
    let before: Vec<u64> = calls.iter().map(|c| c.subscriber.received()).collect();
    for (c, b) in calls.iter().zip(before) {
        until(
            &format!("{what}: the call in {} flows", c.room),
            async || (c.subscriber.received() > b + 100).then_some(()),
        )
        .await;
    }
}

/// A rolling restart of a three-server data centre: each server in turn drains
/// (SIGTERM), keeps its calls, sends new ones for its rooms to the others, exits when
/// its calls end, and comes back to take its rooms again. No call anywhere stops
/// receiving media at any step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_data_centre_drops_no_live_call() {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let (urls, members) = member_urls(3);
    let args = |u: &str| member_args(u, &urls);
    let mut servers: Vec<ServerProcess> = urls.iter().map(|u| start(&args(u))).collect();
    let bases: Vec<String> = servers.iter().map(|s| s.http_base.clone()).collect();
    assert_eq!(bases, urls);

    // One call per server, in a room it owns, asked of another server.
    let mut calls = Vec::new();
    for i in 0..3 {
        let c = call(&bases, (i + 1) % 3, room_owned_by(&members, i)).await;
        assert_eq!(c.server, i, "a room lands on its owner");
        calls.push(c);
    }
    all_flow(&calls, "before the restart").await;

    for i in 0..3 {
        servers[i].send_signal(libc::SIGTERM);
        until("the server turns unhealthy", async || {
            (health(&bases[i]).await.0 == 503).then_some(())
        })
        .await;
        // A new call for one of its rooms lands elsewhere.
        let spilled = call(&bases, (i + 1) % 3, room_owned_by(&members, i)).await;
        assert_ne!(spilled.server, i, "a new call for a draining server's room");
        calls.push(spilled);
        all_flow(&calls, &format!("server {i} draining")).await;
        assert!(servers[i].is_running(), "server {i} exited with calls left");

        // Its calls end; it exits; it comes back and takes its rooms again.
        let (ending, going_on): (Vec<Call>, Vec<Call>) =
            calls.into_iter().partition(|c| c.server == i);
        calls = going_on;
        for c in ending {
            let (p, s) = (c.publisher.resource.clone(), c.subscriber.resource.clone());
            drop(c.subscriber);
            drop(c.publisher);
            delete(&s, &c.token).await;
            delete(&p, &c.token).await;
        }
        let status = servers[i]
            .wait_exit(WITHIN)
            .unwrap()
            .unwrap_or_else(|| panic!("server {i} exits once its calls ended"));
        assert!(status.success(), "server {i} exited with {status}");
        servers[i] = start(&args(&urls[i]));
        let back = call(&bases, (i + 2) % 3, room_owned_by(&members, i)).await;
        assert_eq!(back.server, i, "a restarted server takes its rooms again");
        calls.push(back);
        all_flow(&calls, &format!("server {i} restarted")).await;
    }
    // Every server has been restarted once and holds the call it took back.
    for i in 0..3 {
        assert!(
            calls.iter().any(|c| c.server == i),
            "no call on server {i} after the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_refuses_new_sessions_and_stops_at_its_deadline() {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let mut server = start(&["--drain-deadline", "3"].map(String::from));
    let base = server.http_base.clone();
    let room = random_room("deadline");
    let token = mint_token(SECRET, &room, "u", &["publish", "subscribe"], None).unwrap();
    let publisher = live(&base, &room, &token, PUBLISHER, Some(0x2222)).await;

    // Without --admin-secret the admin API is off.
    let r = http_client()
        .post(format!("{base}/admin/drain"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "admin_disabled");

    // `cascade probe` (the container health check) finds it healthy, then not.
    let probe = |args: &[&str]| {
        std::process::Command::new(cascade_bin())
            .arg("probe")
            .args(args)
            .output()
            .unwrap()
    };
    let listen = base.trim_start_matches("http://").to_owned();
    let healthy = probe(&["--http-listen", &listen]);
    assert!(healthy.status.success(), "{healthy:?}");

    let started = Instant::now();
    server.send_signal(libc::SIGTERM);
    until("/healthz turns 503", async || {
        (health(&base).await.0 == 503).then_some(())
    })
    .await;
    let offer = cascade_peer::ClientPeer::new(PUBLISHER, &[])
        .unwrap()
        .offer();
    let r = http_client()
        .post(format!("{base}/rtc/v1/rooms/{room}/publish"))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "draining", "{body}");
    assert_eq!(metric(&base, "cascade_sessions").await, Some(1.0));
    assert_eq!(metric(&base, "cascade_draining").await, Some(1.0));
    // The refused publish counts; the health probes answered 503 do not.
    assert_eq!(
        metric(&base, r#"cascade_refused_total{reason="draining"}"#).await,
        Some(1.0)
    );
    let draining = probe(&["--url", &format!("{base}/healthz")]);
    assert_eq!(draining.status.code(), Some(1), "{draining:?}");
    assert!(
        String::from_utf8_lossy(&draining.stdout).contains("503"),
        "{draining:?}"
    );

    let status = server
        .wait_exit(WITHIN)
        .unwrap()
        .expect("the server stops at its drain deadline");
    assert!(status.success(), "exited with {status}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "stopped {:?} after SIGTERM, before its 3 s deadline",
        started.elapsed()
    );
    assert!(
        server.stderr_tail().contains("drain deadline passed"),
        "{}",
        server.stderr_tail()
    );
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_drains_with_the_admin_secret_only() {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let mut server = start(&["--admin-secret", ADMIN].map(String::from));
    let url = server.url("/admin/drain");
    let post = |auth: Option<&'static str>| {
        let mut req = http_client().post(&url);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        req.send()
    };
    for (auth, code) in [
        (None, "missing_token"),
        (Some("not-the-secret"), "bad_admin_token"),
    ] {
        let r = post(auth).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], code);
    }
    assert_eq!(
        health(&server.http_base).await.0,
        200,
        "a refused drain drains nothing"
    );
    let r = post(Some(ADMIN)).await.unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["draining"], true, "{body}");
    // No session: the drain ends at once.
    let status = server
        .wait_exit(WITHIN)
        .unwrap()
        .expect("a drained server with no session exits");
    assert!(status.success(), "exited with {status}");
}
