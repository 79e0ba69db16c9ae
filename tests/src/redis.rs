//! A real Redis server for the suites that need one (`cascade signal`'s cluster
//! engine): Debian's `redis-server` started on a free loopback port in a temporary
//! directory, persisting every write before it answers (`appendonly yes`,
//! `appendfsync always`), killed and its directory removed on drop. A missing
//! `redis-server` is an error, never a skip.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

use crate::service::ServiceProcess;

/// Where Debian installs it.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A running Redis server.
#[derive(Debug)]
pub struct RedisServer {
    service: ServiceProcess,
    dir: PathBuf,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
}

impl RedisServer {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> anyhow::Result<RedisServer> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start), with more `redis-server` arguments (`--maxclients
    /// 20000`, say).
    pub fn start_with(extra_args: &[&str]) -> anyhow::Result<RedisServer> {
        ensure!(
            std::path::Path::new(REDIS_SERVER).is_file(),
            "{REDIS_SERVER} is missing: `cargo xtask test` installs Debian's redis-server"
        );
        let dir = std::env::temp_dir().join(format!(
            "cascade-redis-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir)?;
        // A free port: bound, read and released just before redis binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .args(extra_args)
            .arg("--dir")
            .arg(&dir);
        let (service, ()) = ServiceProcess::start(cmd, "redis-server", |line| {
            line.contains("Ready to accept connections").then_some(())
        })
        .context("starting redis-server")?;
        Ok(RedisServer {
            service,
            dir,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

impl RedisServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.service.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.service.child.kill();
        let _ = self.service.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
