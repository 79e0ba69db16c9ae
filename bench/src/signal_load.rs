//! `cascade-bench signal`: the load of `cascade signal`, on its embedded store and on
//! its Redis engine, side by side in one run.
//!
//! For each engine it starts a real `cascade signal` (and, for Redis, Debian's
//! `redis-server` with `appendfsync always`) and measures, over WebSockets on
//! loopback:
//! - **connections held**: N users connected and welcomed at once, and the server's
//!   resident memory per connection (RSS growth over N);
//! - **throughput**: sender → receiver pairs, each sender keeping a window of sends
//!   in flight; durable messages per second end to end (accepted by the store *and*
//!   delivered to the receiver);
//! - **latency**: the same pairs paced at half that rate, each message carrying its
//!   send time; p50/p99 of send → delivery.
//!
//! Bench, client and server share the machine's cores; the figures include that.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cascade_core::token::{Claims, TokenSecret, mint};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::media::now_ns;
use crate::procfs;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest a single wait may take.
const WAIT: Duration = Duration::from_secs(30);
/// Sends a sender keeps unanswered.
const WINDOW: usize = 256;
/// A receiver acknowledges after this many messages.
const ACK_EVERY: u64 = 200;
/// Connections opened at once while filling up.
const CONNECT_PARALLEL: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) server_bin: PathBuf,
    pub(crate) connections: usize,
    pub(crate) pairs: usize,
    pub(crate) messages_per_pair: usize,
    pub(crate) latency_secs: f64,
}

impl Config {
    pub(crate) fn new(server_bin: PathBuf, quick: bool) -> Config {
        Config {
            server_bin,
            connections: if quick { 2_000 } else { 10_000 },
            pairs: if quick { 20 } else { 50 },
            messages_per_pair: if quick { 1_000 } else { 4_000 },
            latency_secs: if quick { 3.0 } else { 10.0 },
        }
    }
}

/// The figures of one engine.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EngineResult {
    engine: String,
    connections: usize,
    connect_secs: f64,
    server_rss_base_mib: f64,
    server_rss_held_mib: f64,
    kib_per_connection: f64,
    redis_rss_growth_mib: Option<f64>,
    messages: usize,
    throughput_msgs_per_sec: f64,
    latency_rate_msgs_per_sec: f64,
    latency_messages: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
}

/// A child process killed on drop.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and waits for a stdout line for which `ready` gives a value.
fn spawn<T>(mut cmd: Command, ready: impl Fn(&str) -> Option<T>) -> anyhow::Result<(Child, T)> {
    use std::io::BufRead;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Nobody listens any more: keep draining so the child never blocks.
                continue;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(v) = ready(&line) {
                    return Ok((child, v));
                }
            }
            Err(_) => {
                let _ = child.kill();
                bail!("{cmd:?} did not become ready");
            }
        }
    }
}

fn temp_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "cascade-bench-{what}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn start_signal(bin: &Path, store: &str, secret: &str) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Command::new(bin);
    cmd.arg("signal")
        .args(["--listen", "127.0.0.1:0", "--store", store])
        .args(["--token-secret", secret, "--rate", "1000000"])
        .env("RUST_LOG", "warn");
    let (child, addr) = spawn(cmd, |line| {
        let rest = line.trim().strip_prefix("cascade signal listening:")?;
        rest.split_whitespace().find_map(|f| {
            f.strip_prefix("ws://")?
                .strip_suffix("/v1/connect")
                .map(str::to_owned)
        })
    })?;
    Ok((Proc { child }, addr))
}

fn token(secret: &TokenSecret, user: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    Ok(mint(
        secret,
        &Claims {
            sub: user.into(),
            room: "bench".into(),
            grants: vec![],
            exp: now + 3600,
            iat: now,
        },
    )?)
}

async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no frame in time")?
            .context("connection ended")??;
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(&t)?);
        }
    }
}

async fn connect(addr: &str, token: &str) -> anyhow::Result<Ws> {
    let mut req = format!("ws://{addr}/v1/connect").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .context("connect timed out")??;
    ws.send(Message::Text(json!({"type": "hello"}).to_string().into()))
        .await?;
    loop {
        if next_json(&mut ws).await?["type"] == "welcome" {
            return Ok(ws);
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Raises the open-file limit to its hard maximum (children inherit it).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Sender `i` sends `n` messages to receiver `i` with a window in flight; the
/// receiver acknowledges as it goes. Returns per message its latency in ns, when
/// `pace` is given (messages per second per sender), else nothing.
async fn pair(
    addr: String,
    secret: TokenSecret,
    i: usize,
    run: u64,
    n: usize,
    pace: Option<f64>,
) -> anyhow::Result<Vec<u64>> {
    let mut sender = connect(&addr, &token(&secret, &format!("s{run}-{i}"))?).await?;
    let mut receiver = connect(&addr, &token(&secret, &format!("r{run}-{i}"))?).await?;
    let to = format!("r{run}-{i}");
    let recv = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n);
        let mut got = 0usize;
        while got < n {
            let frame = next_json(&mut receiver).await?;
            if frame["type"] != "message" {
                continue;
            }
            got += 1;
            if let Some(t) = frame["body"]["t"].as_u64() {
                latencies.push(now_ns().saturating_sub(t));
            }
            let seq = frame["seq"].as_u64().unwrap_or(0);
            if seq % ACK_EVERY == 0 || got == n {
                let ack = json!({"type": "ack", "seq": seq}).to_string();
                receiver.send(Message::Text(ack.into())).await?;
            }
        }
        anyhow::Ok(latencies)
    });
    let started = Instant::now();
    let mut in_flight = 0usize;
    let mut sent = 0usize;
    let mut accepted = 0usize;
    while accepted < n {
        while sent < n && in_flight < WINDOW {
            if let Some(rate) = pace {
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                if due > Instant::now() {
                    if in_flight > 0 {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            let frame = json!({"type": "send", "id": format!("m{sent}"), "to": {"user": to},
                "body": {"t": now_ns()}});
            sender.send(Message::Text(frame.to_string().into())).await?;
            sent += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            continue;
        }
        let frame = next_json(&mut sender).await?;
        ensure!(frame["type"] == "accepted", "sender got {frame}");
        accepted += 1;
        in_flight -= 1;
    }
    let latencies = tokio::time::timeout(WAIT, recv)
        .await
        .context("receiver did not get everything in time")???;
    Ok(if pace.is_some() {
        latencies
    } else {
        Vec::new()
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

async fn measure(
    cfg: &Config,
    engine: &str,
    addr: &str,
    server_pid: u32,
    redis_pid: Option<u32>,
    secret: &TokenSecret,
) -> anyhow::Result<EngineResult> {
    let rss_base = procfs::rss_kib(server_pid).context("server RSS")?;
    let redis_base = redis_pid.and_then(procfs::rss_kib);
    // Connections held.
    let connect_started = Instant::now();
    let mut held = Vec::with_capacity(cfg.connections);
    for chunk_start in (0..cfg.connections).step_by(CONNECT_PARALLEL) {
        let end = (chunk_start + CONNECT_PARALLEL).min(cfg.connections);
        let mut tasks = Vec::new();
        for i in chunk_start..end {
            let addr = addr.to_owned();
            let token = token(secret, &format!("idle-{i}"))?;
            tasks.push(tokio::spawn(async move { connect(&addr, &token).await }));
        }
        for t in tasks {
            held.push(t.await??);
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let rss_held = procfs::rss_kib(server_pid).context("server RSS")?;
    let redis_held = redis_pid.and_then(procfs::rss_kib);
    let kib_per_connection = rss_held.saturating_sub(rss_base) as f64 / cfg.connections as f64;
    drop(held);

    // Throughput.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..cfg.pairs {
        tasks.push(tokio::spawn(pair(
            addr.to_owned(),
            secret.clone(),
            i,
            1,
            cfg.messages_per_pair,
            None,
        )));
    }
    for t in tasks {
        t.await??;
    }
    let messages = cfg.pairs * cfg.messages_per_pair;
    let throughput = messages as f64 / started.elapsed().as_secs_f64();

    // Latency at half the throughput.
    let rate = throughput / 2.0;
    let per_pair = rate / cfg.pairs as f64;
    let n = ((per_pair * cfg.latency_secs).ceil() as usize).max(1);
    let mut tasks = Vec::new();
    for i in 0..cfg.pairs {
        tasks.push(tokio::spawn(pair(
            addr.to_owned(),
            secret.clone(),
            i,
            2,
            n,
            Some(per_pair),
        )));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    latencies.sort_unstable();
    Ok(EngineResult {
        engine: engine.to_owned(),
        connections: cfg.connections,
        connect_secs,
        server_rss_base_mib: mib(rss_base),
        server_rss_held_mib: mib(rss_held),
        kib_per_connection,
        redis_rss_growth_mib: match (redis_base, redis_held) {
            (Some(a), Some(b)) => Some(mib(b.saturating_sub(a))),
            _ => None,
        },
        messages,
        throughput_msgs_per_sec: throughput,
        latency_rate_msgs_per_sec: rate,
        latency_messages: latencies.len(),
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: percentile(&latencies, 1.0),
    })
}

/// Runs both engines; returns the table and the path of the JSON written.
pub(crate) fn run(cfg: &Config, out: &Path) -> anyhow::Result<(String, PathBuf)> {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let secret_text = format!("{:032x}", rand::random::<u128>());
    let secret = TokenSecret::parse(&secret_text);
    let mut results = Vec::new();
    {
        let dir = temp_dir("signal-store")?;
        let store = dir.join("signal.redb");
        let (server, addr) = start_signal(&cfg.server_bin, &store.to_string_lossy(), &secret_text)?;
        let r = rt.block_on(measure(
            cfg,
            "embedded (redb)",
            &addr,
            server.child.id(),
            None,
            &secret,
        ));
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        results.push(r.context("embedded engine")?);
    }
    {
        let redis = cascade_tests::redis::RedisServer::start_with(&["--maxclients", "20000"])?;
        let (server, addr) = start_signal(&cfg.server_bin, &redis.url, &secret_text)?;
        let r = rt.block_on(measure(
            cfg,
            "redis (1 node)",
            &addr,
            server.child.id(),
            Some(redis.pid()),
            &secret,
        ));
        drop(server);
        drop(redis);
        results.push(r.context("redis engine")?);
    }
    let mut table = format!(
        "cascade signal: {} connections held, {} pairs x {} messages, latency at half rate for {} s\n",
        cfg.connections, cfg.pairs, cfg.messages_per_pair, cfg.latency_secs
    );
    table.push_str(&format!(
        "{:<16} {:>9} {:>10} {:>11} {:>12} {:>10} {:>9} {:>9} {:>9}\n",
        "engine", "conn", "RSS MiB", "KiB/conn", "msg/s", "at msg/s", "p50 ms", "p99 ms", "max ms"
    ));
    for r in &results {
        table.push_str(&format!(
            "{:<16} {:>9} {:>10.1} {:>11.1} {:>12.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2}\n",
            r.engine,
            r.connections,
            r.server_rss_held_mib,
            r.kib_per_connection,
            r.throughput_msgs_per_sec,
            r.latency_rate_msgs_per_sec,
            r.latency_p50_ms,
            r.latency_p99_ms,
            r.latency_max_ms
        ));
        if let Some(g) = r.redis_rss_growth_mib {
            table.push_str(&format!(
                "{:<16} redis-server grew {g:.1} MiB while the connections were held\n",
                ""
            ));
        }
    }
    std::fs::create_dir_all(out)?;
    let path = out.join(format!(
        "signal-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    ));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({"config": {
            "connections": cfg.connections, "pairs": cfg.pairs,
            "messages_per_pair": cfg.messages_per_pair, "latency_secs": cfg.latency_secs,
            "window": WINDOW, "cpus": procfs::cpus()},
            "results": results}))?,
    )?;
    Ok((table, path))
}
