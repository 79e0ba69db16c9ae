//! Operating the `cascade` binary, with real processes:
//!
//! - Logs written to a pipe (a journal, a log file) carry no terminal colour codes;
//!   `--log-format json` writes one JSON object a line with `level` and `fields`.
//! - `--dataplane auto` under a seccomp filter that refuses `io_uring_setup` (EPERM,
//!   as container runtimes' default profiles do) falls back to recvmmsg/sendmmsg
//!   and says why in one line.
//! - `cascade check-config` accepts a sound configuration and reports each problem
//!   of a broken one (short secret, missing TLS files, a port in use, a member that
//!   does not resolve), exiting 1.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use cascade_tests::dc::DnsProcess;
use cascade_tests::{ServerProcess, cascade_bin, require};

fn binary_present() -> bool {
    require(cascade_bin().is_file(), "the cascade binary")
}

/// The log `read` gives once it holds `line` (5 s at most): a process's stderr is
/// read on a thread of the harness, so a line may come after what the test waited for.
fn log_with(read: impl Fn() -> String, line: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut log = read();
    while !log.contains(line) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        log = read();
    }
    log
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    if !binary_present() {
        return;
    }
    let mut server = ServerProcess::start(&["--log-format", "text"]).unwrap();
    server.stop().unwrap();
    let _ = server.wait_exit(Duration::from_secs(5)).unwrap();
    let log = log_with(|| server.stderr_tail(), "data plane started");
    assert!(log.contains("data plane started"), "{log}");
    assert!(!log.contains('\x1b'), "ESC in a piped log:\n{log:?}");

    let zone = cascade_tests::dc::ZoneFile::new(
        "zone = \"ops.test\"\n[[server]]\nname = \"m1\"\naddress = \"10.0.0.1\"\nregion = \"eu\"\n",
    )
    .unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let dns = DnsProcess::launch(
        Command::new(cascade_bin()),
        zone.path(),
        any,
        any,
        Duration::from_millis(500),
        "",
    )
    .unwrap();
    let log = log_with(|| dns.stderr_tail(), "zone loaded");
    assert!(log.contains("zone loaded"), "{log}");
    assert!(!log.contains('\x1b'), "ESC in a piped log:\n{log:?}");
}

#[test]
fn json_logs_are_one_object_a_line() {
    if !binary_present() {
        return;
    }
    let mut server = ServerProcess::start(&["--log-format", "json"]).unwrap();
    server.stop().unwrap();
    let _ = server.wait_exit(Duration::from_secs(5)).unwrap();
    let log = server.stderr_tail();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"data plane started\"")),
        "{log}"
    );
}

/// A classic BPF seccomp program: `io_uring_setup` fails with EPERM, everything
/// else is allowed (what a container runtime's default profile does to io_uring).
fn deny_io_uring_setup() -> [libc::sock_filter; 4] {
    let nr_offset = 0; // seccomp_data.nr
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, nr_offset),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

#[test]
fn auto_data_plane_falls_back_with_one_line_when_io_uring_is_blocked() {
    if !binary_present() {
        return;
    }
    let filter = deny_io_uring_setup();
    let mut cmd = Command::new(cascade_bin());
    // SAFETY: prctl(2) calls only, on a program that lives in this closure; they
    // allocate nothing and are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = ServerProcess::launch(cmd, &["--dataplane", "auto"], "").unwrap();
    server.stop().unwrap();
    let _ = server.wait_exit(Duration::from_secs(5)).unwrap();
    let log = server.stderr_tail();
    let blocked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring blocked"))
        .collect();
    assert_eq!(blocked.len(), 1, "{log}");
    assert!(blocked[0].contains("seccomp"), "{}", blocked[0]);
    assert!(log.contains("backend=\"userspace\""), "{log}");
}

/// Runs `cascade check-config ARGS`: exit code and standard output.
fn check_config(args: &[&str]) -> (i32, String) {
    let out = Command::new(cascade_bin())
        .arg("check-config")
        .args(args)
        .env_remove("CASCADE_DATAPLANE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_passes_a_sound_configuration() {
    if !binary_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cascade-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cascade.toml");
    std::fs::write(
        &file,
        "http_listen = \"127.0.0.1:0\"\nmedia_listen = \"127.0.0.1:0\"\n\
         token_secrets = [\"k1:0123456789abcdef0123456789abcdef\"]\n",
    )
    .unwrap();
    let (code, out) = check_config(&["--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 error(s)"), "{out}");
    assert!(out.contains("ok: token secret #1 is long enough"), "{out}");
}

#[test]
fn check_config_reports_each_problem_and_fails() {
    if !binary_present() {
        return;
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (code, out) = check_config(&[
        "--http-listen",
        &busy_addr,
        "--media-listen",
        "127.0.0.1:0",
        "--token-secret",
        "short",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
        "--members",
        "http://member.invalid:8080",
    ]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "error: token secret #1 is 5 bytes long",
        "error: TLS: reading /nonexistent/cert.pem",
        &format!("error: cannot bind HTTP {busy_addr}"),
        "error: member http://member.invalid:8080 does not resolve",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{out}");
    }
    drop(busy);

    let (code, out) = check_config(&["--config", "/nonexistent/cascade.toml"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: cannot read config file"), "{out}");
}
