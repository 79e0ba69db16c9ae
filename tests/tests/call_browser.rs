//! The Call Kit end to end, in headless Chromium (`tests/browser/call.mjs` drives the
//! `/call` and `/meeting` demo pages through their UI): alice's page on media server
//! M1 calls bob's page on M2 through a `cascade signal`, so each side's media
//! cascades from the other's server. Accepted, declined, cancelled, answered on one
//! of two devices, a callee link cut for 5 s (reconnecting banner, then recovery),
//! and a four-page meeting that highlights the page that speaks. Everything (both
//! servers, the signal service, Chromium) runs in a network namespace of its own, so
//! the link can be cut with nftables without touching anything else. Screenshots go
//! to `tests/artifacts/`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use cascade_tests::cascade::cluster_args;
use cascade_tests::netns::Netns;
use cascade_tests::service::ServiceProcess;
use cascade_tests::signal::parse_listening;
use cascade_tests::{
    ServerProcess, browser_dir, cascade_bin, chromium_path, command_available, http_client,
    mint_token, random_room, require,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SECRET: &str = "cascade-test-users";
const CLUSTER: &str = "cascade-test-cluster";
/// Hard limit of one scenario's browser script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the callee's media link is cut in the reconnect scenario.
const OUTAGE: Duration = Duration::from_secs(5);

/// One scenario at a time: each runs Chromium with several pages.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn prerequisites() -> bool {
    cascade_tests::browser_prerequisites() && cascade_tests::netns::require()
}

/// Two media servers that cascade, and a `cascade signal`, in a namespace.
struct Rig {
    servers: Vec<ServerProcess>,
    signal_url: String,
    _signal: ServiceProcess,
    store: std::path::PathBuf,
    // Dropped last: the processes above run inside it.
    ns: Netns,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.store);
    }
}

impl Rig {
    fn start(label: &str) -> anyhow::Result<Self> {
        let ns = Netns::new(label)?;
        // Chromium gathers no candidate on loopback alone: a veth pair inside the
        // namespace gives it an address (the servers stay on 127.0.0.1).
        ns.ip(["link", "add", "cv0", "type", "veth", "peer", "name", "cv1"])?;
        ns.ip(["addr", "add", "10.77.0.1/24", "dev", "cv0"])?;
        ns.ip(["addr", "add", "10.77.0.2/24", "dev", "cv1"])?;
        for dev in ["cv0", "cv1"] {
            ns.ip(["link", "set", dev, "up"])?;
        }
        let args = cluster_args(SECRET, CLUSTER);
        let servers = (0..2)
            .map(|_| ns.spawn_server(&args))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let store = std::env::temp_dir().join(format!("{}.redb", random_room("call-signal")));
        let mut cmd = ns.command(cascade_bin());
        cmd.arg("signal")
            .args(["--listen", "127.0.0.1:0", "--token-secret", SECRET])
            .arg("--store")
            .arg(&store);
        let (signal, addr) = ServiceProcess::start(cmd, "cascade signal", parse_listening)?;
        Ok(Rig {
            servers,
            signal_url: format!("ws://{addr}/v1/connect"),
            _signal: signal,
            store,
            ns,
        })
    }

    /// The URL of `page` (`call` or `meeting`) on server `m` for `user` in `room`.
    fn page(&self, m: usize, page: &str, user: &str, room: &str) -> anyhow::Result<String> {
        let token = mint_token(SECRET, room, user, &["publish", "subscribe"], None)?;
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{page}", self.servers[m].http_base),
            [
                ("user", user),
                ("room", room),
                ("token", &token),
                ("signal", &self.signal_url),
                ("signal_token", &token),
            ],
        )?;
        Ok(url.to_string())
    }

    /// Polls `name` on every server until it is `want` (10 s at most).
    fn wait_all(&self, name: &str, want: f64) -> anyhow::Result<()> {
        for s in &self.servers {
            let base = s.http_base.clone();
            let got = self.ns.block_on(|| async move {
                cascade_tests::wait_for_metric(&base, name, Duration::from_secs(10), |v| v == want)
                    .await
            });
            anyhow::ensure!(
                got.is_ok(),
                "{name} on {} is {:?}, wanted {want}",
                s.http_base,
                got.err().flatten()
            );
        }
        Ok(())
    }

    /// GET of each resource URL (from inside the namespace) answers 404.
    fn all_gone(&self, resources: &[String]) -> anyhow::Result<()> {
        for url in resources {
            let asked = url.clone();
            let status = self.ns.block_on(|| async move {
                http_client()
                    .get(&asked)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })?;
            anyhow::ensure!(status == 404, "{url} still answers {status}");
        }
        Ok(())
    }

    /// Cuts (or restores) every UDP datagram to and from server `m`'s media port.
    fn cut_media(&self, m: usize, cut: bool) -> anyhow::Result<()> {
        let port = self.servers[m].media_addr.port().to_string();
        if cut {
            self.ns
                .exec("nft", ["add", "table", "inet", "cascade_cut"])?;
            self.ns.exec(
                "nft",
                [
                    "add",
                    "chain",
                    "inet",
                    "cascade_cut",
                    "input",
                    "{ type filter hook input priority 0 ; policy accept ; }",
                ],
            )?;
            for dir in ["dport", "sport"] {
                let rule = format!("udp {dir} {port} drop");
                self.ns.exec(
                    "nft",
                    ["add", "rule", "inet", "cascade_cut", "input", &rule],
                )?;
            }
        } else {
            self.ns
                .exec("nft", ["delete", "table", "inet", "cascade_cut"])?;
        }
        Ok(())
    }
}

/// Runs `call.mjs --scenario NAME` inside the namespace with `pages`; calls `on_event`
/// for each event line it prints before its report, whose answer (if any) goes to
/// the script's stdin. Returns the report.
async fn run_scenario(
    rig: &Rig,
    scenario: &str,
    pages: &BTreeMap<&str, String>,
    mut on_event: impl FnMut(&str) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<Value> {
    let artifacts = browser_dir().join("..").join("artifacts");
    let mut cmd = tokio::process::Command::from(rig.ns.command("node"));
    cmd.arg(browser_dir().join("call.mjs"))
        .args(["--scenario", scenario])
        .arg("--pages")
        .arg(serde_json::to_string(pages)?)
        .arg("--artifacts")
        .arg(&artifacts)
        .args([
            "--timeout-ms",
            &SCRIPT_TIMEOUT.as_millis().to_string(),
            "--chromium",
        ])
        .arg(chromium_path())
        .current_dir(browser_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("cannot run node call.mjs")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let stderr = child.stderr.take().context("stderr")?;
    let steps = tokio::spawn(async move {
        let mut out = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            out.push_str(&l);
            out.push('\n');
        }
        out
    });
    let report = tokio::time::timeout(SCRIPT_TIMEOUT + Duration::from_secs(15), async {
        let mut report = None;
        while let Some(line) = lines.next_line().await? {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match v["event"].as_str() {
                Some("report") => report = Some(v),
                Some(event) => {
                    if let Some(answer) = on_event(event)? {
                        stdin.write_all(format!("{answer}\n").as_bytes()).await?;
                        stdin.flush().await?;
                    }
                }
                None => {}
            }
        }
        anyhow::Ok(report)
    })
    .await
    .context("the browser script did not finish in time")??;
    let _ = child.wait().await;
    let steps = steps.await.unwrap_or_default();
    let report = report.with_context(|| format!("no report from call.mjs; its steps:\n{steps}"))?;
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    if !errors.is_empty() {
        let logs: Vec<String> = rig
            .servers
            .iter()
            .map(|s| format!("{} stderr:\n{}", s.http_base, s.stderr_tail()))
            .collect();
        anyhow::bail!(
            "{scenario} failed: {errors:?}\nreport: {report:#}\nsteps:\n{steps}\n{}",
            logs.join("\n")
        );
    }
    eprintln!("{scenario}: {report:#}");
    Ok(report)
}

/// The resource URLs a call page reported, checked to be on the page's own server.
fn call_resources(report: &Value, page: &str, base: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for kind in ["publication", "subscription"] {
        let url = report["pages"][page][kind]
            .as_str()
            .with_context(|| format!("{page} reported no {kind}: {report}"))?;
        anyhow::ensure!(
            url.starts_with(&format!("{base}/rtc/v1/resources/")),
            "{page}'s {kind} {url} is not on its server {base}"
        );
        out.push(url.to_owned());
    }
    Ok(out)
}

/// After a call: every resource is gone from both servers, and nothing is left.
fn nothing_left(rig: &Rig, resources: &[String]) -> anyhow::Result<()> {
    rig.wait_all("cascade_sessions", 0.0)?;
    rig.wait_all("cascade_relays", 0.0)?;
    rig.all_gone(resources)
}

fn call_pages(
    rig: &Rig,
    room: &str,
    devices: usize,
) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut pages = BTreeMap::new();
    pages.insert("caller", rig.page(0, "call", "alice", room)?);
    pages.insert("callee", rig.page(1, "call", "bob", room)?);
    if devices == 2 {
        pages.insert("callee2", rig.page(1, "call", "bob", room)?);
    }
    Ok(pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_two_servers_is_accepted_and_hung_up() -> anyhow::Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start("call")?;
    let room = random_room("call");
    let pages = call_pages(&rig, &room, 1)?;
    let report = run_scenario(&rig, "accept", &pages, |_| Ok(None)).await?;
    let mut resources = call_resources(&report, "caller", &rig.servers[0].http_base)?;
    resources.extend(call_resources(
        &report,
        "callee",
        &rig.servers[1].http_base,
    )?);
    assert_eq!(report["pages"]["callee"]["end_reason"], "remote_hangup");
    nothing_left(&rig, &resources)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_and_a_cancelled_call_leave_nothing() -> anyhow::Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start("decline")?;
    for scenario in ["decline", "cancel"] {
        let room = random_room(scenario);
        let pages = call_pages(&rig, &room, 1)?;
        run_scenario(&rig, scenario, &pages, |_| Ok(None)).await?;
        rig.wait_all("cascade_sessions", 0.0)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_on_two_devices_answers_on_one_and_the_other_stops_ringing() -> anyhow::Result<()>
{
    if !prerequisites() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start("devices")?;
    let room = random_room("devices");
    let pages = call_pages(&rig, &room, 2)?;
    let report = run_scenario(&rig, "two-devices", &pages, |_| Ok(None)).await?;
    assert_eq!(
        report["pages"]["callee2"]["end_reason"],
        "answered_elsewhere"
    );
    let mut resources = call_resources(&report, "caller", &rig.servers[0].http_base)?;
    resources.extend(call_resources(
        &report,
        "callee",
        &rig.servers[1].http_base,
    )?);
    nothing_left(&rig, &resources)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_link_cut_for_five_seconds_shows_reconnecting_and_recovers() -> anyhow::Result<()>
{
    if !prerequisites() || !require(command_available("nft"), "nft (nftables)") {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start("reconnect")?;
    let room = random_room("reconnect");
    let pages = call_pages(&rig, &room, 1)?;
    let mut cut_at = None;
    let report = run_scenario(&rig, "reconnect", &pages, |event| match event {
        "block" => {
            rig.cut_media(1, true)?;
            cut_at = Some(std::time::Instant::now());
            Ok(None)
        }
        "banner" => {
            // The outage lasts OUTAGE from the cut, however soon the banner showed.
            let cut = cut_at.context("banner before the cut")?;
            std::thread::sleep(OUTAGE.saturating_sub(cut.elapsed()));
            rig.cut_media(1, false)?;
            Ok(Some("unblocked".into()))
        }
        other => anyhow::bail!("unexpected event {other}"),
    })
    .await;
    if cut_at.is_some() {
        // Never leave the cut in place, whatever happened.
        let _ = rig.cut_media(1, false);
    }
    let report = report?;
    assert!(
        report["pages"]["callee"]["after"]["framesDecoded"].as_u64() > Some(0),
        "{report}"
    );
    rig.wait_all("cascade_sessions", 0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_page_meeting_highlights_the_one_who_speaks_also_to_who_joins_later()
-> anyhow::Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start("meeting")?;
    let room = random_room("meeting");
    let mut pages = BTreeMap::new();
    // The first (alphabetically) speaks; the others mute; the last joins once the
    // speaker was elected.
    for user in ["ann", "ben", "cat", "dan", "eve"] {
        pages.insert(user, rig.page(0, "meeting", user, &room)?);
    }
    let report = run_scenario(&rig, "meeting", &pages, |_| Ok(None)).await?;
    for user in ["ben", "cat", "dan", "eve"] {
        assert_eq!(report["pages"][user]["highlighted"], "ann", "{report}");
    }
    rig.wait_all("cascade_sessions", 0.0)
}
