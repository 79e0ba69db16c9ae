//! `cascade signal` as a real process, killed with SIGKILL while a client streams
//! sends at it: restarted on the same store, every send it answered `accepted` is
//! delivered, each id once, in a gapless sequence; retries of accepted sends are
//! answered `duplicate: true` and store nothing new.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use cascade_tests::signal::{
    Inbox, SignalProcess, Streamer, WAIT, accepted_until_killed, connect, dm, index_of, next_frame,
    token,
};
use cascade_tests::{cascade_bin, require};
use futures_util::{SinkExt, StreamExt};

/// Most sends alice makes before the kill.
const MAX_SENDS: usize = 5_000;
/// The server is killed once alice has this many `accepted` answers.
const KILL_AFTER_ACCEPTED: usize = 300;
/// Sends fed to the socket between flushes.
const BATCH: usize = 50;
/// Sends never answered `accepted` that alice retries after the restart.
const RETRY_UNACCEPTED: usize = 100;
/// Sends answered `accepted` that alice retries after the restart.
const RETRY_ACCEPTED: usize = 50;

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
    let (sink, mut stream) = alice.split();
    let sender = Streamer::start(sink, MAX_SENDS, BATCH);
    let (accepted, killed_with) = accepted_until_killed(&mut stream, KILL_AFTER_ACCEPTED, || {
        let sent_then = sender.sent();
        let status = server.kill9()?;
        sender.stop();
        Ok((sent_then, KILL_AFTER_ACCEPTED, status))
    })
    .await?;
    // Answers already on their way before the kill still count: the server sent them.
    let Some((sent_at_kill, accepted_at_kill, status)) = killed_with else {
        bail!(
            "alice's connection ended after {} accepted, before the kill; stderr:\n{}",
            accepted.len(),
            server.stderr_tail()
        );
    };
    let sent = sender.finish().await?;
    drop(stream);
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
