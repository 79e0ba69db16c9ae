//! The `cascade serve` process under test: started with loopback listeners (or the
//! addresses given), announced by its `cascade listening:` line, stopped with SIGTERM.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const STDERR_TAIL: usize = 40;

/// A running `cascade serve`.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) http_base: String,
    pub(crate) media: SocketAddr,
    pub(crate) secret: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// How to start the server.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec<'a> {
    pub(crate) bin: &'a Path,
    pub(crate) dataplane: Option<&'a str>,
    pub(crate) workers: Option<usize>,
    pub(crate) http_listen: String,
    pub(crate) media_listen: String,
    /// Runs the server with `ip netns exec NAME`.
    pub(crate) netns: Option<&'a str>,
    /// More `cascade serve` arguments (`--ebpf`, `--cluster-secret`, ...).
    pub(crate) extra_args: Vec<String>,
    /// CPUs the server may run on (empty: any).
    pub(crate) cpus: Vec<usize>,
}

impl<'a> ServerSpec<'a> {
    /// A server of `bin` listening on `ip` (HTTP and media on free ports), with
    /// `--workers` as given and everything else at its default.
    pub(crate) fn on(bin: &'a Path, ip: std::net::IpAddr, workers: Option<usize>) -> Self {
        Self {
            bin,
            dataplane: None,
            workers,
            http_listen: SocketAddr::new(ip, 0).to_string(),
            media_listen: SocketAddr::new(ip, 0).to_string(),
            netns: None,
            extra_args: Vec::new(),
            cpus: Vec::new(),
        }
    }
}

impl ServerProcess {
    pub(crate) fn start(spec: &ServerSpec<'_>) -> anyhow::Result<Self> {
        if !spec.bin.is_file() {
            bail!(
                "no cascade binary at {} (build it with `cargo build --release -p cascade` or pass --server-bin)",
                spec.bin.display()
            );
        }
        let secret: String = (0..24)
            .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
            .collect();
        let mut cmd = match spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(spec.bin);
                c
            }
            None => Command::new(spec.bin),
        };
        cmd.arg("serve")
            .args(["--http-listen", &spec.http_listen])
            .args(["--media-listen", &spec.media_listen])
            .args(["--token-secret", &secret]);
        if let Some(d) = spec.dataplane {
            cmd.args(["--dataplane", d]);
        }
        if let Some(w) = spec.workers {
            cmd.args(["--workers", &w.to_string()]);
        }
        cmd.args(&spec.extra_args);
        for var in [
            "CASCADE_CONFIG",
            "CASCADE_PUBLIC_IP",
            "CASCADE_PUBLIC_URL",
            "CASCADE_DATAPLANE",
            "CASCADE_WORKERS",
            "CASCADE_EBPF",
            "CASCADE_MEDIA_INTERFACE",
            "CASCADE_CLUSTER_SECRET",
            "CASCADE_CLUSTER_INSECURE_HTTP",
        ] {
            cmd.env_remove(var);
        }
        if !spec.cpus.is_empty() {
            crate::affinity::pin_command(&mut cmd, &spec.cpus);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        die_with_parent(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", spec.bin.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        drain(stdout, move |l| {
            let _ = tx.send(l);
        });
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        {
            let tail = tail.clone();
            drain(stderr, move |l| {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(l);
            });
        }
        let mut server = Self {
            child,
            http_base: String::new(),
            media: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret,
            stderr: tail,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some((http, media)) = parse_listening_line(&line) {
                        server.http_base = http;
                        server.media = media;
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(100));
                    let status = server.child.try_wait()?;
                    bail!(
                        "cascade serve exited before listening ({status:?}): {}",
                        server.stderr_tail()
                    );
                }
            }
            if let Some(status) = server.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "cascade serve exited with {status} before listening: {}",
                    server.stderr_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "cascade serve did not announce itself in {STARTUP_TIMEOUT:?}: {}",
                    server.stderr_tail()
                );
            }
        }
    }

    /// The server's process id (the `cascade` process itself, also under `ip netns exec`,
    /// which execs it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server logged.
    pub(crate) fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub(crate) fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the child get SIGTERM when the bench dies, however it dies.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Reads `pipe` line by line on a thread until it closes.
pub(crate) fn drain(
    pipe: impl Read + Send + 'static,
    mut each: impl FnMut(String) + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => each(String::from_utf8_lossy(&buf).trim_end().to_string()),
            }
        }
    });
}

/// Parses `cascade listening: http=http://127.0.0.1:PORT media=udp://127.0.0.1:PORT`.
pub(crate) fn parse_listening_line(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.trim().strip_prefix("cascade listening:")?;
    let mut http = None;
    let mut media = None;
    for field in rest.split_whitespace() {
        if let Some(v) = field.strip_prefix("http=") {
            http = Some(v.trim_end_matches('/').to_string());
        } else if let Some(v) = field.strip_prefix("media=") {
            media = v.strip_prefix("udp://").unwrap_or(v).parse().ok();
        }
    }
    Some((http?, media?))
}

/// The value of one series, written exactly as the body has it (name and labels, e.g.
/// `cascade_ebpf_packets{counter="fanout_clones"}`), in a Prometheus text body.
pub(crate) fn metric_series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(series)?;
        rest.starts_with(' ')
            .then(|| rest.trim().parse::<f64>().ok())
            .flatten()
    })
}

/// Sums every sample of metric `name` (all label sets) in a Prometheus text body.
pub(crate) fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let series_end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..series_end] != name {
            continue;
        }
        if let Some(v) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line() {
        let (h, m) = parse_listening_line(
            "cascade listening: http=http://127.0.0.1:4000 media=udp://127.0.0.1:5000",
        )
        .unwrap();
        assert_eq!(h, "http://127.0.0.1:4000");
        assert_eq!(m.port(), 5000);
    }

    #[test]
    fn metrics() {
        let t = "# TYPE x counter\ncascade_packets_out_total 12\n\
                 cascade_drops_total{reason=\"a\"} 2\ncascade_drops_total{reason=\"b b\"} 3\n";
        assert_eq!(metric_sum(t, "cascade_packets_out_total"), Some(12.0));
        assert_eq!(metric_sum(t, "cascade_drops_total"), Some(5.0));
        assert_eq!(metric_sum(t, "cascade_packets_in_total"), None);
        assert_eq!(
            metric_series(t, "cascade_drops_total{reason=\"b b\"}"),
            Some(3.0)
        );
        assert_eq!(metric_series(t, "cascade_drops_total"), None);
        assert_eq!(metric_series(t, "cascade_packets_out_total"), Some(12.0));
    }
}
