//! A service child process of the end-to-end suites (`cascade dns`, `cascade signal`):
//! started with its pipes drained, killed should the test process die first, the last
//! lines of its stderr kept for failure messages, and ready once it announced itself
//! on stdout. How it is stopped is the caller's.

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{STARTUP_TIMEOUT, STDERR_TAIL_LINES};

/// A started service; see the module documentation.
#[derive(Debug)]
pub struct ServiceProcess {
    pub child: Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl ServiceProcess {
    /// Spawns `cmd` (stdin closed, stdout and stderr piped) and waits up to
    /// [`STARTUP_TIMEOUT`] for a stdout line `announce` recognises; returns the
    /// process and what `announce` read from that line. `what` names it in errors.
    pub fn start<T>(
        mut cmd: Command,
        what: &str,
        announce: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<(Self, T)> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Killed too should this test process die without stopping it (`ip netns
        // exec` execs the service in place, so the signal reaches it there as well).
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr_pipe = child.stderr.take().context("no stderr pipe")?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        {
            let stderr = stderr.clone();
            let _ = crate::drain(stderr_pipe, "service-stderr", move |line| {
                let mut tail = stderr.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            });
        }
        let (line_tx, line_rx) = mpsc::channel();
        let _ = crate::drain(stdout, "service-stdout", move |line| {
            let _ = line_tx.send(line);
        });
        let mut process = ServiceProcess { child, stderr };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{what} did not announce itself within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                    process.stderr_tail()
                );
            }
            match line_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(found) = announce(&line) {
                        return Ok((process, found));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = process.child.wait()?;
                    bail!(
                        "{what} exited ({status}) before announcing itself; stderr:\n{}",
                        process.stderr_tail()
                    );
                }
            }
        }
    }

    /// The last lines it logged.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().map(|l| format!("{l}\n")).collect()
    }
}
