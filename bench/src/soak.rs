//! `cascade-bench soak --minutes N`: steady publish/subscribe churn against one
//! `cascade serve`, reporting its resident memory, open file descriptors and sessions
//! over time. Flat is the goal: whatever a session takes must come back when it ends.
//!
//! Every interval one room is created (a publisher and two subscribers, ICE + DTLS
//! over loopback, a burst of video through the data plane) and the oldest live room
//! is deleted (DELETE of its three resources), so `rooms` rooms are live at any time.
//! A sample is taken every `sample` interval; the table shows the first, the middle
//! and the last, and the JSON under `bench/out/` has every one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_dataplane::srtp::SrtpProfile;

use crate::media::{StreamTx, VIDEO_PT, now_ns};
use crate::procfs;
use crate::server::{ServerProcess, ServerSpec, metric_sum};
use crate::signal::{Connected, Signaller};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) server_bin: PathBuf,
    pub(crate) minutes: f64,
    /// Rooms live at once.
    pub(crate) rooms: usize,
    /// A room is created (and the oldest deleted) this often.
    pub(crate) churn: Duration,
    /// Video packets each new publisher sends.
    pub(crate) burst: usize,
    pub(crate) sample: Duration,
}

/// One sample.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    secs: f64,
    rss_mib: f64,
    fds: usize,
    sessions: f64,
    rooms_created: usize,
}

struct Room {
    token: String,
    publisher: Connected,
    subscribers: Vec<Connected>,
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

async fn open_room(sig: &Signaller, n: usize, burst: usize) -> anyhow::Result<Room> {
    let name = format!("soak-{n}");
    let token = sig.token(&name)?;
    let audio = 0x5000_0000 | (n as u32 & 0xffff) << 1;
    let mut publisher = sig.publish(&name, &token, audio, audio + 1).await?;
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        subscribers.push(sig.subscribe(&name, &token, &publisher.resource).await?);
    }
    let mut stream = StreamTx::new(audio + 1, VIDEO_PT);
    let mut buf = vec![0u8; 1500];
    for _ in 0..burst {
        let len = stream.write_next(&mut buf, now_ns(), None);
        if let Ok(len) = publisher.tx.protect_rtp(&mut buf, len) {
            let _ = publisher.socket.send(&buf[..len]);
        }
    }
    Ok(Room {
        token,
        publisher,
        subscribers,
    })
}

async fn close_room(sig: &Signaller, room: Room) -> anyhow::Result<()> {
    for s in &room.subscribers {
        sig.delete(&s.resource, &room.token).await?;
    }
    sig.delete(&room.publisher.resource, &room.token).await
}

/// Runs the soak; returns the table and the JSON's path.
pub(crate) fn run(cfg: &Config, out: &Path) -> anyhow::Result<(String, PathBuf)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let server = ServerProcess::start(&ServerSpec::on(&cfg.server_bin, loopback, Some(1)))?;
    let pid = server.pid();
    let sig = Signaller::new(
        &server.http_base,
        &server.secret,
        SrtpProfile::AeadAes128Gcm,
        loopback,
    );
    let samples = rt.block_on(async {
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(cfg.minutes * 60.0);
        let mut live: std::collections::VecDeque<Room> = Default::default();
        let mut created = 0usize;
        let mut samples = Vec::new();
        let mut next_sample = started;
        let mut tick = tokio::time::interval(cfg.churn);
        while Instant::now() < end {
            tick.tick().await;
            live.push_back(
                open_room(&sig, created, cfg.burst)
                    .await
                    .with_context(|| format!("room {created}"))?,
            );
            created += 1;
            while live.len() > cfg.rooms {
                if let Some(old) = live.pop_front() {
                    close_room(&sig, old).await?;
                }
            }
            if Instant::now() >= next_sample {
                next_sample += cfg.sample;
                let metrics = sig.metrics().await?;
                samples.push(Sample {
                    secs: started.elapsed().as_secs_f64(),
                    rss_mib: procfs::rss_kib(pid).unwrap_or(0) as f64 / 1024.0,
                    fds: fd_count(pid),
                    sessions: metric_sum(&metrics, "cascade_sessions").unwrap_or(f64::NAN),
                    rooms_created: created,
                });
            }
        }
        for room in live.drain(..) {
            close_room(&sig, room).await?;
        }
        anyhow::Ok(samples)
    })?;
    anyhow::ensure!(!samples.is_empty(), "no sample taken");
    let pick = [0, samples.len() / 2, samples.len() - 1];
    let mut table = format!(
        "soak: {} min, {} rooms live (1 publisher + 2 subscribers each), one new room every {:?}\n\
         {:>8} {:>9} {:>6} {:>9} {:>14}\n",
        cfg.minutes, cfg.rooms, cfg.churn, "time s", "RSS MiB", "fds", "sessions", "rooms created"
    );
    for i in pick {
        let s = &samples[i];
        table.push_str(&format!(
            "{:>8.0} {:>9.1} {:>6} {:>9} {:>14}\n",
            s.secs, s.rss_mib, s.fds, s.sessions, s.rooms_created
        ));
    }
    std::fs::create_dir_all(out)?;
    let path = out.join(format!(
        "soak-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    ));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::json!({
            "minutes": cfg.minutes, "rooms": cfg.rooms,
            "churn_ms": cfg.churn.as_millis() as u64, "burst": cfg.burst,
            "samples": samples}))?,
    )?;
    drop(server);
    Ok((table, path))
}
