//! `--vs janus`: the fanout load against Debian's Janus VideoRoom, on the same
//! topology as Cascade (server in one network namespace, load in another, across a
//! veth pair; Janus never offers loopback candidates). Janus is started with a
//! configuration the bench writes to a temporary directory: ICE-lite, HTTP transport
//! only, VideoRoom only, no session timeout.

pub(crate) mod api;
pub(crate) mod peer;
pub(crate) mod versus;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where Debian installs Janus's modules.
const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/janus";
const HTTP_PORT: u16 = 8088;

/// Installs Debian's `janus` when it is missing (as root).
pub(crate) fn ensure_installed() -> anyhow::Result<PathBuf> {
    for p in ["/usr/bin/janus", "/usr/local/bin/janus"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", "janus"])
        .envs(env)
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .envs(env)
            .stdout(Stdio::null())
            .status();
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "janus"])
            .envs(env)
            .stdout(Stdio::null())
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get install janus failed ({status})");
        }
    }
    if Path::new("/usr/bin/janus").is_file() {
        Ok(PathBuf::from("/usr/bin/janus"))
    } else {
        bail!("janus is not installed")
    }
}

/// A running Janus.
pub(crate) struct JanusProcess {
    child: Child,
    /// `http://IP:8088/janus`.
    pub(crate) base: String,
    _dir: TempDir,
}

impl JanusProcess {
    pub(crate) fn start(bin: &Path, netns: &str, ip: Ipv4Addr) -> anyhow::Result<Self> {
        let dir = TempDir::new("cascade-bench-janus")?;
        write_config(&dir.0, ip)?;
        let log = std::fs::File::create(dir.0.join("janus.log"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(bin)
            .arg(format!("--configs-folder={}", dir.0.display()))
            .args(["--disable-colors", "--debug-level=3"]);
        crate::server::die_with_parent(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting janus")?;
        Ok(Self {
            child,
            base: format!("http://{ip}:{HTTP_PORT}/janus"),
            _dir: dir,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of Janus's log.
    pub(crate) fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self._dir.0.join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until the HTTP API answers.
    pub(crate) async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = crate::signal::http_client();
        loop {
            if !self.is_running() {
                bail!("janus exited:\n{}", self.log_tail());
            }
            let info = http.get(format!("{}/info", self.base)).send().await;
            if info.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "janus did not answer on {}:\n{}",
                    self.base,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The modules in `LIB_DIR/<kind>` other than `keep`, for the `disable` lists.
fn others(kind: &str, keep: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(LIB_DIR).join(kind))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".so") && n != keep)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(",")
}

fn write_config(dir: &Path, ip: Ipv4Addr) -> anyhow::Result<()> {
    let d = dir.display();
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            r#"general: {{
    configs_folder = "{d}"
    plugins_folder = "{LIB_DIR}/plugins"
    transports_folder = "{LIB_DIR}/transports"
    events_folder = "{LIB_DIR}/events"
    loggers_folder = "{LIB_DIR}/loggers"
    debug_level = 3
    session_timeout = 0
    server_name = "cascade-bench"
}}
certificates: {{
}}
media: {{
    rtp_port_range = "20000-60000"
}}
nat: {{
    ice_lite = true
    ice_tcp = false
    ignore_mdns = true
    nice_debug = false
    ice_enforce_list = "{ip}"
}}
plugins: {{
    disable = "{plugins}"
}}
transports: {{
    disable = "{transports}"
}}
events: {{
    broadcast = false
    disable = "{events}"
}}
loggers: {{
    disable = "{loggers}"
}}
"#,
            plugins = others("plugins", "libjanus_videoroom.so"),
            transports = others("transports", "libjanus_http.so"),
            events = others("events", ""),
            loggers = others("loggers", ""),
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            r#"general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {HTTP_PORT}
    ip = "{ip}"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
"#
        ),
    )?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!("{prefix}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Janus side of the load: its process, one API session, the VideoRoom room.
pub(crate) struct JanusTarget {
    process: JanusProcess,
    api: api::JanusApi,
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    keepalive: crate::signal::Keepalive,
    room: u64,
    server_ip: Ipv4Addr,
    load_ip: Ipv4Addr,
    profiles: Vec<cascade_dataplane::srtp::SrtpProfile>,
    /// Plugin handles to detach at the end.
    handles: Vec<u64>,
    /// The SRTP profile the last connection negotiated.
    pub(crate) profile: Option<cascade_dataplane::srtp::SrtpProfile>,
}

impl crate::signal::Consent for peer::FlexPeer {
    fn poll(&mut self, now: Instant) -> Option<(std::net::SocketAddr, Vec<u8>)> {
        self.poll_transmit(now)
    }
}

impl JanusTarget {
    /// Starts Janus in `netns` on `server_ip` and creates a VideoRoom room. The calling
    /// thread must be in the load namespace (it makes the sockets).
    pub(crate) fn start(
        bin: &Path,
        netns: &str,
        server_ip: Ipv4Addr,
        load_ip: Ipv4Addr,
        profiles: &[cascade_dataplane::srtp::SrtpProfile],
        rt: std::sync::Arc<tokio::runtime::Runtime>,
    ) -> anyhow::Result<Self> {
        let mut process = JanusProcess::start(bin, netns, server_ip)?;
        rt.block_on(process.wait_ready())?;
        let api = rt.block_on(api::JanusApi::connect(&process.base))?;
        let room: u64 = 1 + u64::from(rand::random::<u32>());
        let admin = rt.block_on(api.attach())?;
        rt.block_on(api.request(
            admin,
            serde_json::json!({
                "request": "create", "room": room, "publishers": 1000, "bitrate": 0,
                "audiocodec": "opus", "videocodec": "vp8", "notify_joining": false,
                "permanent": false
            }),
        ))
        .context("creating the VideoRoom room")?;
        Ok(Self {
            process,
            api,
            rt,
            keepalive: crate::signal::Keepalive::start(),
            room,
            server_ip,
            load_ip,
            profiles: profiles.to_vec(),
            handles: vec![admin],
            profile: None,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if !self.process.is_running() {
            bail!("janus exited:\n{}", self.process.log_tail());
        }
        Ok(())
    }

    /// Runs ICE and DTLS for `peer` over a fresh socket on the load address.
    fn connect(
        &mut self,
        mut peer: peer::FlexPeer,
    ) -> anyhow::Result<(std::net::UdpSocket, peer::Keys)> {
        let socket = std::net::UdpSocket::bind((self.load_ip, 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(5)))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 2048];
        while peer.keys().is_none() {
            if Instant::now() > deadline {
                bail!("ICE/DTLS with Janus did not complete in 10 s");
            }
            while let Some((dest, data)) = peer.poll_transmit(Instant::now()) {
                socket.send_to(&data, dest)?;
            }
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                peer.handle_receive(Instant::now(), from, &buf[..n])?;
            }
        }
        let keys = peer.keys().context("keys")?;
        self.profile = Some(keys.tx.profile);
        socket.connect(keys.server)?;
        socket.set_nonblocking(true)?;
        self.keepalive.add(peer, socket.try_clone()?);
        Ok((socket, keys))
    }

    pub(crate) fn add_publishers(
        &mut self,
        rig: &mut crate::load::Rig,
        count: usize,
    ) -> anyhow::Result<()> {
        use crate::media::{AUDIO_PT, StreamTx, VIDEO_PT};
        for _ in 0..count {
            let (a, v) = (rand::random::<u32>() | 1, rand::random::<u32>() & !1);
            let mut peer = peer::FlexPeer::new(&self.profiles, self.server_ip.into())?;
            let handle = self.rt.block_on(self.api.attach())?;
            self.handles.push(handle);
            let offer = peer.publisher_offer(a, v);
            let body = serde_json::json!({
                "request": "joinandconfigure", "room": self.room, "ptype": "publisher",
                "display": "load", "audio": true, "video": true
            });
            let (data, answer) = self.rt.block_on(self.api.request_async(
                handle,
                body,
                Some(("offer", &offer)),
                true,
            ))?;
            let feed = data["id"]
                .as_u64()
                .with_context(|| format!("no feed id in {data}"))?;
            peer.accept_answer(&answer.context("no answer")?, Instant::now())?;
            let (socket, keys) = self.connect(peer)?;
            crate::netio::set_buffers(&socket, 0, 4 << 20);
            rig.publishers.push(crate::load::Publisher {
                socket,
                tx: Some(cascade_dataplane::srtp::SrtpContext::new(&keys.tx)?),
                audio: StreamTx::new(a, AUDIO_PT),
                video: StreamTx::new(v, VIDEO_PT),
                layers: Vec::new(),
                transport_seq: None,
                resource: format!("{handle}:{feed}"),
            });
        }
        Ok(())
    }

    pub(crate) fn add_subscribers(
        &mut self,
        rig: &mut crate::load::Rig,
        publisher: usize,
        count: usize,
    ) -> anyhow::Result<()> {
        let feed: u64 = rig.publishers[publisher]
            .resource
            .split_once(':')
            .and_then(|(_, f)| f.parse().ok())
            .context("publisher without a feed id")?;
        for _ in 0..count {
            let mut peer = peer::FlexPeer::new(&self.profiles, self.server_ip.into())?;
            let handle = self.rt.block_on(self.api.attach())?;
            self.handles.push(handle);
            let body = serde_json::json!({
                "request": "join", "room": self.room, "ptype": "subscriber",
                "streams": [{"feed": feed}]
            });
            let (_, offer) = self
                .rt
                .block_on(self.api.request_async(handle, body, None, true))?;
            let answer = peer.answer_offer(&offer.context("no offer")?, Instant::now())?;
            self.rt.block_on(self.api.request_async(
                handle,
                serde_json::json!({"request": "start", "room": self.room}),
                Some(("answer", &answer)),
                false,
            ))?;
            let (socket, keys) = self.connect(peer)?;
            crate::netio::set_buffers(&socket, 2 << 20, 0);
            rig.subscribers.push(crate::load::Subscriber {
                socket,
                rx: Some(cascade_dataplane::srtp::SrtpContext::new(&keys.rx)?),
                publisher,
                streams: Vec::new(),
                resource: handle.to_string(),
                same_seq: false,
            });
        }
        Ok(())
    }

    pub(crate) fn clear(&mut self, rig: &mut crate::load::Rig) -> anyhow::Result<()> {
        self.keepalive.clear();
        let handles: Vec<u64> = self.handles.drain(1..).collect();
        for h in handles {
            let _ = self.rt.block_on(self.api.detach(h));
        }
        rig.publishers.clear();
        rig.subscribers.clear();
        Ok(())
    }
}
