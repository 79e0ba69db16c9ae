//! The core stays sans-IO because the compiler keeps it so: none of its normal
//! dependencies, direct or transitive, may be an async runtime, an HTTP or DNS stack,
//! a socket library or the data plane. This test reads the dependency graph the way
//! a reviewer would, with `cargo tree -p cascade-core -e normal`, and fails on any of
//! them.

use std::process::Command;

/// Crates that bring I/O (sockets, an event loop, HTTP, DNS) or the data plane.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "io-uring",
    "async-std",
    "smol",
    "axum",
    "hyper",
    "http",
    "h3",
    "quinn",
    "reqwest",
    "tower",
    "cascade-dataplane",
    "cascade-ebpf",
    "aya",
];

/// Crate-name prefixes that are forbidden whole (every hickory crate).
const FORBIDDEN_PREFIXES: &[&str] = &["hickory-"];

/// Every crate `package` depends on at run time, itself included, as `cargo tree`
/// names them.
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_core_depends_on_no_io_crate() {
    let deps = normal_dependencies("cascade-core");
    assert!(
        deps.iter().any(|d| d == "cascade-core") && deps.iter().any(|d| d == "cascade-command"),
        "cargo tree did not list the core and its command crate: {deps:?}"
    );
    let bad: Vec<&String> = deps
        .iter()
        .filter(|d| {
            FORBIDDEN.contains(&d.as_str()) || FORBIDDEN_PREFIXES.iter().any(|p| d.starts_with(p))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "cascade-core must not depend on {bad:?} (all normal dependencies: {deps:?})"
    );
}

#[test]
fn the_check_sees_a_forbidden_crate_in_the_shell() {
    // The same reading of the shell's graph finds tokio and axum, so an empty result
    // above means the core is clean, not that the check reads nothing.
    let names = normal_dependencies("cascade");
    assert!(
        names.iter().any(|n| n == "tokio") && names.iter().any(|n| n == "axum"),
        "{names:?}"
    );
}
