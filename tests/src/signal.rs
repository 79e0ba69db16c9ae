//! Clients of `cascade signal` for the end-to-end suites: the service as a child
//! process, a WebSocket client that says hello and reads JSON frames, and the
//! receiving side of a stream of direct messages from alice to bob (`m0`, `m1`,
//! ...) with the checks every suite makes of it: gapless sequences, each id once,
//! in send order.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cascade_core::token::{Claims, TokenSecret, mint};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::cascade_bin;
use crate::service::ServiceProcess;

/// Longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// Once everything expected has arrived, how long without a frame counts as "nothing more".
pub const QUIET: Duration = Duration::from_millis(500);

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running `cascade signal`, killed when dropped.
pub struct SignalProcess {
    pub service: ServiceProcess,
    pub addr: SocketAddr,
}

impl SignalProcess {
    /// `cascade signal --listen 127.0.0.1:0 --store STORE --token-secret SECRET`, with
    /// a rate no test client reaches; waits for its `cascade signal listening:` line.
    /// `STORE` is a file path or a `redis://` URL.
    pub fn start(store: impl AsRef<std::ffi::OsStr>, secret: &str) -> anyhow::Result<Self> {
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
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        self.service.child.kill()?;
        Ok(self.service.child.wait()?)
    }

    pub fn stderr_tail(&self) -> String {
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
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("cascade signal listening:")?;
    rest.split_whitespace().find_map(|f| {
        f.strip_prefix("ws://")?
            .strip_suffix("/v1/connect")?
            .parse()
            .ok()
    })
}

pub fn token(secret: &str, user: &str) -> String {
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

pub fn dm(i: usize) -> Message {
    let frame =
        json!({"type": "send", "id": format!("m{i}"), "to": {"user": "bob"}, "body": {"n": i}});
    Message::Text(frame.to_string().into())
}

/// The index `i` of the id `m{i}`.
pub fn index_of(id: &str) -> usize {
    id.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an id alice never sent: {id:?}"))
}

/// The next JSON frame; `Ok(None)` when the connection ended, an error after `wait`.
pub async fn next_frame<S>(ws: &mut S, wait: Duration) -> anyhow::Result<Option<Value>>
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
pub async fn connect(
    addr: SocketAddr,
    token: &str,
    user: &str,
    resume_after: Option<u64>,
) -> anyhow::Result<(Ws, Vec<Value>)> {
    connect_url(
        &format!("ws://{addr}/v1/connect"),
        token,
        user,
        resume_after,
    )
    .await
}

/// [`connect`] to a WebSocket URL (a signal service mounted elsewhere than `/`).
pub async fn connect_url(
    url: &str,
    token: &str,
    user: &str,
    resume_after: Option<u64>,
) -> anyhow::Result<(Ws, Vec<Value>)> {
    let mut req = url.into_client_request()?;
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
pub struct Inbox {
    pub by_seq: BTreeMap<u64, String>,
    /// The ids in `by_seq`.
    ids: HashSet<String>,
    pub frames: usize,
}

impl Inbox {
    pub fn take(&mut self, frame: &Value) -> anyhow::Result<()> {
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
        self.ids.insert(id.to_owned());
        Ok(())
    }

    pub fn has(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Reads bob's socket until `done` holds (bounded by [`WAIT`]), then until
    /// nothing comes for [`QUIET`].
    pub async fn read(
        &mut self,
        bob: &mut Ws,
        done: impl Fn(&Inbox) -> bool,
    ) -> anyhow::Result<()> {
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
    pub fn check(&self) -> anyhow::Result<()> {
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

/// Alice's side of a stream of direct messages `m0`, `m1`, ... to bob, sent in
/// batches of `batch` from a task until `max` are sent, the socket fails, or
/// [`Streamer::stop`] is called.
pub struct Streamer {
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Streamer {
    /// Starts sending on `sink`.
    pub fn start(mut sink: SplitSink<Ws, Message>, max: usize, batch: usize) -> Streamer {
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (sent, stop) = (sent.clone(), stop.clone());
            tokio::spawn(async move {
                'outer: for start in (0..max).step_by(batch) {
                    for i in start..(start + batch).min(max) {
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
        Streamer { sent, stop, task }
    }

    /// How many were fed to the socket so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Sends no more.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits (up to [`WAIT`]) for the task to end; returns how many were sent.
    pub async fn finish(self) -> anyhow::Result<usize> {
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("the sender did not stop")??;
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

/// Reads alice's answers to a [`Streamer`]'s sends until her connection ends (or
/// [`WAIT`] passes): each must be a first `accepted`, in send order. Once
/// `kill_after` are accepted, calls `kill` (which kills the server under her) once.
/// Answers already on their way still count. Returns the ids accepted and what
/// `kill` returned, `None` when the connection ended before the kill.
pub async fn accepted_until_killed<T>(
    stream: &mut SplitStream<Ws>,
    kill_after: usize,
    mut kill: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<String>, Option<T>)> {
    let mut accepted: Vec<String> = Vec::new();
    let mut killed = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = next_frame(stream, left).await? else {
            break;
        };
        ensure!(
            frame["type"] == "accepted",
            "alice got an unexpected frame: {frame}"
        );
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
        if killed.is_none() && accepted.len() >= kill_after {
            killed = Some(kill()?);
        }
    }
    Ok((accepted, killed))
}
