//! `cascade signal` as a real process, killed with SIGKILL while a client streams
//! sends at it: restarted on the same store, every send it answered `accepted` is
//! delivered, each id once, in a gapless sequence; retries of accepted sends are
//! answered `duplicate: true` and store nothing new.

use std::collections::{BTreeMap, HashSet};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cascade_core::token::{Claims, TokenSecret, mint};
use cascade_tests::service::ServiceProcess;
use cascade_tests::{cascade_bin, require};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Most sends alice makes before the kill.
const MAX_SENDS: usize = 5_000;
/// The server is killed once alice has this many `accepted` answers.
const KILL_AFTER_ACCEPTED: usize = 300;
/// Sends fed to the socket between flushes.
const BATCH: usize = 50;
/// Longest any single wait may take.
const WAIT: Duration = Duration::from_secs(20);
/// Once everything expected has arrived, how long without a frame counts as "nothing more".
const QUIET: Duration = Duration::from_millis(500);
/// Sends never answered `accepted` that alice retries after the restart.
const RETRY_UNACCEPTED: usize = 100;
/// Sends answered `accepted` that alice retries after the restart.
const RETRY_ACCEPTED: usize = 50;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A directory for the store, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "cascade-signal-crash-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `cascade signal`, killed when dropped.
struct SignalProcess {
    service: ServiceProcess,
    addr: SocketAddr,
}

impl SignalProcess {
    /// `cascade signal --listen 127.0.0.1:0 --store STORE --token-secret SECRET`, with
    /// a rate no test client reaches; waits for its `cascade signal listening:` line.
    fn start(store: &Path, secret: &str) -> anyhow::Result<Self> {
        let bin = cascade_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg("signal")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(store)
            .args(["--token-secret", secret])
            .args(["--rate", "1000000"]);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let what = format!("{} signal", bin.display());
        let (service, addr) = ServiceProcess::start(cmd, &what, parse_listening)?;
        Ok(SignalProcess { service, addr })
    }

    /// SIGKILL, and the exit status.
    fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        self.service.child.kill()?;
        Ok(self.service.child.wait()?)
    }

    fn stderr_tail(&self) -> String {
        self.service.stderr_tail()
    }
}

impl Drop for SignalProcess {
    fn drop(&mut self) {
        let child = &mut self.service.child;
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- cascade signal ({}) stderr, last lines ----\n{}----",
                self.addr,
                self.stderr_tail()
            );
        }
    }
}

/// Parses `cascade signal listening: ws://ADDR/v1/connect http://ADDR`.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("cascade signal listening:")?;
    rest.split_whitespace().find_map(|f| {
        f.strip_prefix("ws://")?
            .strip_suffix("/v1/connect")?
            .parse()
            .ok()
    })
}

fn token(secret: &str, user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mint(
        &TokenSecret::parse(secret),
        &Claims {
            sub: user.into(),
            room: "crash".into(),
            grants: vec![],
            exp: now + 3600,
            iat: now,
        },
    )
    .unwrap()
}

fn dm(i: usize) -> Message {
    let frame =
        json!({"type": "send", "id": format!("m{i}"), "to": {"user": "bob"}, "body": {"n": i}});
    Message::Text(frame.to_string().into())
}

/// The index `i` of the id `m{i}`.
fn index_of(id: &str) -> usize {
    id.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an id alice never sent: {id:?}"))
}

/// The next JSON frame; `Ok(None)` when the connection ended, an error after `wait`.
async fn next_frame<S>(ws: &mut S, wait: Duration) -> anyhow::Result<Option<Value>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no frame in time")?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(&t)?)),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(None),
            Some(Ok(_)) => {}
        }
    }
}

/// Connects as `user` and says hello; returns the socket and any frames that came
/// before the welcome.
async fn connect(
    addr: SocketAddr,
    token: &str,
    user: &str,
    resume_after: Option<u64>,
) -> anyhow::Result<(Ws, Vec<Value>)> {
    let mut req = format!("ws://{addr}/v1/connect").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .context("connect timed out")??;
    let mut hello = json!({"type": "hello"});
    if let Some(after) = resume_after {
        hello["resume_after"] = json!(after);
    }
    ws.send(Message::Text(hello.to_string().into())).await?;
    let mut early = Vec::new();
    loop {
        let frame = next_frame(&mut ws, WAIT)
            .await?
            .context("connection ended before the welcome")?;
        if frame["type"] == "welcome" {
            ensure!(frame["user"] == user, "welcome for the wrong user: {frame}");
            return Ok((ws, early));
        }
        early.push(frame);
    }
}

/// Bob's inbox as delivered: id by seq, every redelivery checked against the first.
#[derive(Default)]
struct Inbox {
    by_seq: BTreeMap<u64, String>,
    frames: usize,
}

impl Inbox {
    fn take(&mut self, frame: &Value) -> anyhow::Result<()> {
        match frame["type"].as_str() {
            Some("message") => {}
            // Nothing else is expected on bob's connection but messages.
            _ => bail!("bob got an unexpected frame: {frame}"),
        }
        self.frames += 1;
        let seq = frame["seq"].as_u64().context("message without a seq")?;
        let id = frame["id"].as_str().context("message without an id")?;
        ensure!(frame["from"] == "alice", "message not from alice: {frame}");
        ensure!(
            frame["room"].is_null(),
            "a direct message with a room: {frame}"
        );
        ensure!(
            frame["body"]["n"].as_u64() == Some(index_of(id) as u64),
            "body does not match id: {frame}"
        );
        if let Some(prev) = self.by_seq.insert(seq, id.to_owned()) {
            ensure!(prev == id, "seq {seq} delivered as {prev} and as {id}");
        }
        Ok(())
    }

    fn has(&self, id: &str) -> bool {
        self.by_seq.values().any(|v| v == id)
    }

    /// Reads bob's socket until `done` holds (bounded by [`WAIT`]), then until
    /// nothing comes for [`QUIET`].
    async fn read(&mut self, bob: &mut Ws, done: impl Fn(&Inbox) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = next_frame(bob, left)
                .await
                .context("bob did not get every expected message in time")?
                .context("bob's connection ended")?;
            self.take(&frame)?;
        }
        loop {
            match next_frame(bob, QUIET).await {
                Ok(Some(frame)) => self.take(&frame)?,
                Ok(None) => bail!("bob's connection ended"),
                Err(_) => return Ok(()),
            }
        }
    }

    /// Seqs are 1..=n, no id twice, and seq order is send order.
    fn check(&self) -> anyhow::Result<()> {
        let n = self.by_seq.len() as u64;
        ensure!(
            self.by_seq.keys().copied().eq(1..=n),
            "bob's seqs are not 1..={n}: gaps {:?}",
            (1..=n)
                .filter(|s| !self.by_seq.contains_key(s))
                .take(10)
                .collect::<Vec<_>>()
        );
        let mut seen = HashSet::new();
        let mut last = None;
        for (seq, id) in &self.by_seq {
            ensure!(
                seen.insert(id.as_str()),
                "{id} delivered twice (again at seq {seq})"
            );
            let i = index_of(id);
            ensure!(
                last.is_none_or(|l| l < i),
                "{id} at seq {seq} comes after a later send"
            );
            last = Some(i);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_sigkill() {
    if !require(
        cascade_bin().is_file(),
        &format!(
            "the cascade binary at {} (run `cargo build -p cascade` or set CASCADE_BIN)",
            cascade_bin().display()
        ),
    ) {
        return;
    }
    run().await.unwrap();
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = TempDir::new()?;
    let store = dir.0.join("s.redb");
    let secret = format!("{:032x}", rand::random::<u128>());
    let alice_token = token(&secret, "alice");
    let bob_token = token(&secret, "bob");

    // Alice streams sends until the server dies under her.
    let mut server = SignalProcess::start(&store, &secret)?;
    let (alice, _) = connect(server.addr, &alice_token, "alice", None).await?;
    let (mut sink, mut stream) = alice.split();
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let sent = sent.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            'outer: for start in (0..MAX_SENDS).step_by(BATCH) {
                for i in start..(start + BATCH).min(MAX_SENDS) {
                    if stop.load(Ordering::Relaxed) || sink.feed(dm(i)).await.is_err() {
                        break 'outer;
                    }
                    sent.store(i + 1, Ordering::Relaxed);
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
        })
    };
    let mut accepted: Vec<String> = Vec::new();
    let mut killed_with = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = next_frame(&mut stream, left).await? else {
            break;
        };
        match frame["type"].as_str() {
            Some("accepted") => {
                ensure!(
                    frame["duplicate"] == false,
                    "a first send answered duplicate: {frame}"
                );
                let id = frame["id"].as_str().context("accepted without an id")?;
                ensure!(
                    index_of(id) == accepted.len(),
                    "accepted {id} out of send order (expected m{})",
                    accepted.len()
                );
                accepted.push(id.to_owned());
            }
            _ => bail!("alice got an unexpected frame: {frame}"),
        }
        if killed_with.is_none() && accepted.len() >= KILL_AFTER_ACCEPTED {
            let sent_then = sent.load(Ordering::Relaxed);
            let status = server.kill9()?;
            stop.store(true, Ordering::Relaxed);
            killed_with = Some((sent_then, accepted.len(), status));
        }
    }
    // Answers already on their way before the kill still count: the server sent them.
    let Some((sent_at_kill, accepted_at_kill, status)) = killed_with else {
        bail!(
            "alice's connection ended after {} accepted, before the kill; stderr:\n{}",
            accepted.len(),
            server.stderr_tail()
        );
    };
    tokio::time::timeout(WAIT, sender)
        .await
        .context("the sender did not stop")??;
    drop(stream);
    let sent = sent.load(Ordering::Relaxed);
    ensure!(
        sent_at_kill > accepted_at_kill,
        "nothing was in flight at the kill ({sent_at_kill} sent, {accepted_at_kill} accepted)"
    );
    drop(server);

    // Restarted on the same store, bob gets every accepted message, each once.
    let restarting = Instant::now();
    let server = SignalProcess::start(&store, &secret)?;
    let restart = restarting.elapsed();
    let (mut bob, early) = connect(server.addr, &bob_token, "bob", Some(0)).await?;
    let mut inbox = Inbox::default();
    for frame in &early {
        inbox.take(frame)?;
    }
    inbox
        .read(&mut bob, |inbox| accepted.iter().all(|id| inbox.has(id)))
        .await?;
    inbox.check()?;
    let delivered_after_restart = inbox.by_seq.len();
    for id in inbox.by_seq.values() {
        ensure!(index_of(id) < sent, "bob got {id}, which alice never sent");
    }

    // Alice retries sends she never saw accepted (those right after the last
    // accepted one: the ones the kill may have caught mid-commit) and some she did.
    let accepted_set: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let unaccepted: Vec<String> = (0..sent)
        .map(|i| format!("m{i}"))
        .filter(|id| !accepted_set.contains(id.as_str()))
        .take(RETRY_UNACCEPTED)
        .collect();
    let step = (accepted.len() / RETRY_ACCEPTED).max(1);
    let accepted_sample: Vec<String> = accepted
        .iter()
        .step_by(step)
        .take(RETRY_ACCEPTED)
        .cloned()
        .collect();
    let retries: Vec<String> = accepted_sample.iter().chain(&unaccepted).cloned().collect();
    let (mut alice, _) = connect(server.addr, &alice_token, "alice", None).await?;
    for id in &retries {
        alice.feed(dm(index_of(id))).await?;
    }
    alice.flush().await?;
    let mut duplicates = 0;
    for id in &retries {
        let frame = next_frame(&mut alice, WAIT)
            .await?
            .context("alice's connection ended")?;
        ensure!(
            frame["type"] == "accepted" && frame["id"] == id.as_str(),
            "retry of {id} answered {frame}"
        );
        let duplicate = frame["duplicate"].as_bool().context("no duplicate flag")?;
        if accepted_set.contains(id.as_str()) {
            ensure!(duplicate, "retry of accepted {id} not answered duplicate");
        } else {
            ensure!(
                duplicate == inbox.has(id),
                "retry of {id}: duplicate {duplicate}, but bob {} it",
                if inbox.has(id) {
                    "already had"
                } else {
                    "did not have"
                }
            );
        }
        duplicates += usize::from(duplicate);
    }
    let fresh = retries.len() - duplicates;
    inbox
        .read(&mut bob, |inbox| retries.iter().all(|id| inbox.has(id)))
        .await?;
    inbox.check()?;
    ensure!(
        inbox.by_seq.len() == delivered_after_restart + fresh,
        "bob has {} messages, expected {delivered_after_restart} + {fresh} newly stored",
        inbox.by_seq.len()
    );

    println!(
        "signal crash: {sent} sent, {accepted_at_kill} accepted at the kill ({sent_at_kill} sent then, \
         exit {status}), {} accepted in all, {delivered_after_restart} delivered after the restart \
         ({} frames), {} retries: {duplicates} answered duplicate, {fresh} stored anew; restart {:.1} s, {:.1} s in all",
        accepted.len(),
        inbox.frames,
        retries.len(),
        restart.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
