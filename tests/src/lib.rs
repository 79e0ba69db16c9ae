//! Harness shared by Cascade's end-to-end suites: finding and running the `cascade`
//! binary, minting tokens, reading metrics, and deciding whether a suite whose tools
//! are missing is skipped (on a developer's machine) or fails (in CI), see [`skip`].

pub mod cascade;
pub mod dc;
pub mod h3client;
pub mod linkemu;
pub mod media;
pub mod netns;
pub mod redis;
pub mod service;
pub mod signal;
pub mod skip;
pub mod slowloris;
pub mod tls;

use std::collections::VecDeque;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long `cascade serve` may take to print its `cascade listening:` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a stopped server may take to exit after SIGTERM before it is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines of the server's stderr kept for failure messages.
const STDERR_TAIL_LINES: usize = 300;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The `cascade` binary: `CASCADE_BIN` if set, else `<target>/debug/cascade`.
pub fn cascade_bin() -> PathBuf {
    match std::env::var_os("CASCADE_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => target_dir().join("debug").join("cascade"),
    }
}

/// True when running in CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    skip::in_ci()
}

/// Called when something a test needs is missing: [`skip::skip`] (a panic in CI, a
/// marker line `cargo xtask test` fails on elsewhere); returns false, so the test can
/// `return`.
pub fn require_or_skip(what: &str) -> bool {
    skip::skip(what)
}

/// `true` when `available`, else [`require_or_skip`]`(what)`.
pub fn require(available: bool, what: &str) -> bool {
    available || require_or_skip(what)
}

/// The Chromium executable the browser suites use: `CHROMIUM_PATH`, else `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    match std::env::var_os("CHROMIUM_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/bin/chromium"),
    }
}

pub fn chromium_available() -> bool {
    chromium_path().is_file()
}

/// True when `name` is an executable file in one of the `PATH` directories.
pub fn command_available(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(name);
        candidate.metadata().is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    })
}

/// `tests/browser`, home of the Node.js scripts that drive Chromium.
pub fn browser_dir() -> PathBuf {
    workspace_root().join("tests").join("browser")
}

/// True when `npm ci` has been run in `tests/browser`.
pub fn browser_node_modules_available() -> bool {
    browser_dir()
        .join("node_modules")
        .join("playwright-core")
        .join("package.json")
        .is_file()
}

/// Chromium, Node.js and `npm ci` run in `tests/browser`: what a script of
/// `tests/browser` needs (each missing one fails under CI).
pub fn browser_tools() -> bool {
    require(
        chromium_available(),
        &format!("Chromium at {}", chromium_path().display()),
    ) && require(command_available("node"), "node (Node.js)")
        && require(
            browser_node_modules_available(),
            "tests/browser/node_modules (run `npm ci` in tests/browser)",
        )
}

/// What every headless-Chromium test of a server needs: [`browser_tools`] and the
/// `cascade` binary.
pub fn browser_prerequisites() -> bool {
    browser_tools() && binary_present()
}

/// The `cascade` binary the tests run is there (it fails under CI when it is not).
pub fn binary_present() -> bool {
    require(
        cascade_bin().is_file(),
        &format!(
            "the cascade binary at {} (run `cargo build -p cascade` or set CASCADE_BIN)",
            cascade_bin().display()
        ),
    )
}

/// `--dataplane <backend>` when `CASCADE_DATAPLANE` names one (`cargo xtask test` runs
/// the suites once per backend), else nothing.
pub fn dataplane_args() -> Vec<String> {
    match std::env::var("CASCADE_DATAPLANE") {
        Ok(d) if !d.is_empty() => vec!["--dataplane".into(), d],
        _ => Vec::new(),
    }
}

/// A Node.js script of `tests/browser` that drives Chromium and writes one JSON
/// object a line on its stdout.
#[derive(Debug)]
pub struct BrowserDriver {
    pub child: Child,
    /// Its stdin, for drivers that take commands.
    pub stdin: Option<std::process::ChildStdin>,
    /// Its stdout's JSON lines (other lines go to stderr, prefixed with the script).
    pub lines: mpsc::Receiver<serde_json::Value>,
}

impl BrowserDriver {
    /// Runs `tests/browser/<script> args...` with `node` (the program of `node`, which
    /// may run it in a network namespace), Chromium's path in `CHROMIUM_PATH`.
    pub fn spawn(mut node: Command, script: &str, args: &[&str]) -> anyhow::Result<Self> {
        node.arg(browser_dir().join(script))
            .args(args)
            .current_dir(browser_dir())
            .env("CHROMIUM_PATH", chromium_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = node.spawn().context("starting node")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        let name = script.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("{name}: {line}"),
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }
}

/// Lines a child process wrote, shared with the threads that drain its pipes.
#[derive(Debug, Default)]
struct Output {
    stdout: Vec<String>,
    stderr_tail: VecDeque<String>,
    /// Every stderr line ever written, to check that the server does not log per packet.
    stderr_lines: u64,
}

/// A running `cascade serve`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub http_base: String,
    /// The UDP media address the server announced.
    pub media_addr: SocketAddr,
    /// The token secret the server was started with.
    pub secret: String,
    pub child: Child,
    output: Arc<Mutex<Output>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `cascade serve --http-listen 127.0.0.1:0 --media-listen 127.0.0.1:0` plus
    /// `extra_args`, with a fresh random `--token-secret` unless `extra_args` gives one,
    /// and waits for its `cascade listening:` line.
    pub fn start<S: AsRef<str>>(extra_args: &[S]) -> anyhow::Result<Self> {
        Self::launch(Command::new(cascade_bin()), extra_args, "")
    }

    /// Runs `cascade serve` through `cmd` (the binary itself, or a wrapper such as
    /// `ip netns exec NS <binary>`), adding the defaults `extra_args` leaves out, and
    /// waits for its `cascade listening:` line. `place` names where it runs, for errors.
    pub fn launch<S: AsRef<str>>(
        mut cmd: Command,
        extra_args: &[S],
        place: &str,
    ) -> anyhow::Result<Self> {
        let args: Vec<&str> = extra_args.iter().map(AsRef::as_ref).collect();
        let given = |flag: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
        let secret = match args.iter().position(|a| *a == "--token-secret") {
            Some(i) => args
                .get(i + 1)
                .context("--token-secret without a value")?
                .to_string(),
            None => match args.iter().find_map(|a| a.strip_prefix("--token-secret=")) {
                Some(s) => s.to_string(),
                None => random_secret(),
            },
        };
        let bin = cascade_bin();
        if !bin.is_file() {
            bail!(
                "no cascade binary at {} (build it with `cargo build -p cascade` or set CASCADE_BIN)",
                bin.display()
            );
        }
        cmd.arg("serve");
        for flag in ["--http-listen", "--media-listen"] {
            if !given(flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        if !given("--token-secret") {
            cmd.args(["--token-secret", &secret]);
        }
        // The eBPF programs attach to an interface that parallel test servers share:
        // suites that test them ask for them explicitly.
        if !given("--ebpf") {
            cmd.args(["--ebpf", "off"]);
        }
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // An empty CASCADE_* variable means "unset" to the suites; to the server's
        // option parser it is a missing value.
        if std::env::var_os("CASCADE_DATAPLANE").is_some_and(|v| v.is_empty()) {
            cmd.env_remove("CASCADE_DATAPLANE");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}{place}", bin.display()))?;

        let output = Arc::new(Mutex::new(Output::default()));
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        {
            let output = output.clone();
            let _ = drain(stdout, "cascade-stdout", move |line| {
                let _ = line_tx.send(line.clone());
                lock(&output).stdout.push(line);
            });
        }
        let stderr_thread = {
            let output = output.clone();
            drain(stderr, "cascade-stderr", move |line| {
                let mut out = lock(&output);
                out.stderr_lines += 1;
                if out.stderr_tail.len() == STDERR_TAIL_LINES {
                    out.stderr_tail.pop_front();
                }
                out.stderr_tail.push_back(line);
            })
        };

        let mut server = ServerProcess {
            http_base: String::new(),
            media_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret,
            child,
            output,
            stderr_thread: Some(stderr_thread),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some((http, media)) = parse_listening_line(&line) {
                        server.http_base = http;
                        server.media_addr = media;
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the server exited (or closed it) before announcing itself.
                    let status = server.stop();
                    server.join_stderr();
                    bail!(
                        "cascade serve{place} closed stdout before announcing itself (exit: {status:?}); stderr:\n{}",
                        server.stderr_tail()
                    );
                }
            }
            if let Some(status) = server.child.try_wait()? {
                server.join_stderr();
                bail!(
                    "cascade serve{place} exited with {status} before announcing itself; stderr:\n{}",
                    server.stderr_tail()
                );
            }
            if left.is_zero() {
                bail!(
                    "cascade serve{place} printed no `cascade listening:` line within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                    server.stderr_tail()
                );
            }
        }
    }

    /// Mints a token for this server's secret (see [`mint_token`]).
    pub fn token(&self, room: &str, user: &str, grants: &[&str]) -> anyhow::Result<String> {
        mint_token(&self.secret, room, user, grants, None)
    }

    /// `http_base` joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http_base, path)
    }

    /// Everything the server printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.output).stdout.clone()
    }

    /// How many lines the server has logged on stderr so far.
    pub fn stderr_line_count(&self) -> u64 {
        lock(&self.output).stderr_lines
    }

    /// The last lines the server logged on stderr.
    pub fn stderr_tail(&self) -> String {
        let out = lock(&self.output);
        let mut s = String::new();
        for line in &out.stderr_tail {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Waits for the stderr-draining thread, once the process has exited, so that
    /// [`Self::stderr_tail`] holds everything it wrote.
    fn join_stderr(&mut self) {
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`, which starts a drain) to the server.
    pub fn send_signal(&self, sig: libc::c_int) {
        signal(&self.child, sig);
    }

    /// Waits at most `timeout` for the server to exit on its own; its exit status,
    /// or `None` when it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.join_stderr();
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGINT (stop at once; SIGTERM would drain) and waits for the exit
    /// (killing the server after [`SHUTDOWN_TIMEOUT`]); returns its exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        signal(&self.child, libc::SIGINT);
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait()?;
        bail!("cascade serve did not exit within {SHUTDOWN_TIMEOUT:?} of SIGINT; killed ({status})")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.stop();
        if std::thread::panicking() {
            self.join_stderr();
            eprintln!(
                "---- cascade serve ({}) stderr, last lines ----\n{}----",
                self.http_base,
                self.stderr_tail()
            );
        }
    }
}

fn lock(output: &Mutex<Output>) -> std::sync::MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `pipe` line by line on a thread until it closes, handing each line to `each`.
fn drain(
    pipe: impl Read + Send + 'static,
    name: &str,
    mut each: impl FnMut(String) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        each(line.trim_end_matches(['\n', '\r']).to_string());
                    }
                }
            }
        })
        .expect("cannot spawn a pipe-draining thread")
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the pid of a child this process has not reaped yet.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Parses `cascade listening: http=http://127.0.0.1:PORT media=udp://127.0.0.1:PORT`.
pub fn parse_listening_line(line: &str) -> Option<(String, SocketAddr)> {
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

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP port free on loopback now (bound, then released), for a server that must
/// know its own URL before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A room name no other test uses: `prefix-<random hex>`.
pub fn random_room(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{prefix}-{n:016x}")
}

/// Mints a token with `cascade token --secret .. --room .. --user .. --grant ..`.
/// `grants` are `publish`/`subscribe`; `ttl` in seconds (the binary's default if `None`).
pub fn mint_token(
    secret: &str,
    room: &str,
    user: &str,
    grants: &[&str],
    ttl: Option<u64>,
) -> anyhow::Result<String> {
    let bin = cascade_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(["token", "--secret", secret, "--room", room, "--user", user]);
    for g in grants {
        cmd.args(["--grant", g]);
    }
    if let Some(ttl) = ttl {
        cmd.args(["--ttl", &ttl.to_string()]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} token", bin.display()))?;
    if !out.status.success() {
        bail!(
            "cascade token failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let token = String::from_utf8(out.stdout)
        .context("cascade token printed non-UTF-8")?
        .trim()
        .to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("cascade token printed {token:?}, not one token");
    }
    Ok(token)
}

/// A client for tests: bounded timeouts, no proxy (everything is on loopback). It
/// accepts any server certificate: tests of TLS check what servers trust of each
/// other, not what this client trusts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("building an HTTP client")
}

/// The body of `GET {http_base}/metrics`.
pub async fn metrics_text(http_base: &str) -> anyhow::Result<String> {
    let resp = http_client()
        .get(format!("{http_base}/metrics"))
        .send()
        .await?
        .error_for_status()?;
    Ok(resp.text().await?)
}

/// Every sample of a Prometheus text exposition as `(series, value)`, where `series`
/// is the name with its labels as written (`name` or `name{a="b"}`).
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.rfind('}') {
            Some(end) if line.contains('{') => (&line[..=end], &line[end + 1..]),
            _ => match line.split_once(char::is_whitespace) {
                Some((s, r)) => (s, r),
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        if let Ok(v) = value.parse::<f64>() {
            out.push((series.trim().to_string(), v));
        }
    }
    out
}

/// Looks `name` up in a Prometheus text exposition. With labels
/// (`cascade_drops_total{reason="x"}`) it is that one series; without, the sum over
/// every series of that metric name. `None` when there is none.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    let samples = parse_metrics(text);
    if name.contains('{') {
        let want: String = name.chars().filter(|c| !c.is_whitespace()).collect();
        samples.into_iter().find_map(|(s, v)| {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            (s == want).then_some(v)
        })
    } else {
        let mut found = None;
        for (series, v) in samples {
            let base = series.split('{').next().unwrap_or_default();
            if base == name {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }
}

/// The value of `name` in a Prometheus text exposition (see [`metric_in`]). Panics,
/// showing the exposition, when there is no such series: an assertion on a renamed or
/// missing metric must fail rather than read zero.
pub fn metric_required(text: &str, name: &str) -> f64 {
    metric_in(text, name)
        .unwrap_or_else(|| panic!("no metric series {name} in the exposition:\n{text}"))
}

/// Reads one metric from `GET {http_base}/metrics` (see [`metric_in`]); `None` when
/// the server has no such metric or could not be reached.
pub async fn metric(http_base: &str, name: &str) -> Option<f64> {
    metric_in(&metrics_text(http_base).await.ok()?, name)
}

/// Polls `metric` every 100 ms until `pred` holds for its value or `timeout` passes;
/// returns the last value read.
pub async fn wait_for_metric(
    http_base: &str,
    name: &str,
    timeout: Duration,
    pred: impl Fn(f64) -> bool,
) -> Result<f64, Option<f64>> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        last = metric(http_base, name).await.or(last);
        if let Some(v) = last
            && pred(v)
        {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn listening_line() {
        let (http, media) = parse_listening_line(
            "cascade listening: http=http://127.0.0.1:41234 media=udp://127.0.0.1:50000",
        )
        .unwrap();
        assert_eq!(http, "http://127.0.0.1:41234");
        assert_eq!(media, "127.0.0.1:50000".parse().unwrap());
        assert!(parse_listening_line("demo page: http://x/?room=demo").is_none());
    }

    #[test]
    fn metrics_parsing() {
        let text = "# HELP cascade_sessions live sessions\n# TYPE cascade_sessions gauge\n\
                    cascade_sessions 3\n\
                    cascade_drops_total{reason=\"no_route\"} 2\n\
                    cascade_drops_total{reason=\"srtp auth\"} 5\n\
                    cascade_bytes_in_total 1.5e3\n";
        assert_eq!(metric_in(text, "cascade_sessions"), Some(3.0));
        assert_eq!(metric_in(text, "cascade_drops_total"), Some(7.0));
        assert_eq!(
            metric_in(text, "cascade_drops_total{reason=\"srtp auth\"}"),
            Some(5.0)
        );
        assert_eq!(metric_in(text, "cascade_bytes_in_total"), Some(1500.0));
        assert_eq!(metric_in(text, "cascade_publications"), None);
        assert_eq!(metric_in(text, "cascade_session"), None);
    }

    #[test]
    fn a_required_metric_is_there_or_fails() {
        let text = "cascade_drops_total{reason=\"unknown_source\"} 0\n";
        let series = "cascade_drops_total{reason=\"unknown_source\"}";
        assert_eq!(metric_required(text, series), 0.0);
        // A renamed or missing series is an error, not a zero.
        let renamed = std::panic::catch_unwind(|| {
            metric_required(text, "cascade_drops_total{reason=\"unknown_src\"}")
        });
        assert!(renamed.is_err());
    }
}
