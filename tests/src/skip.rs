//! The one rule for a test whose real component is missing here (root, a tool, a
//! kernel feature): under CI it fails; elsewhere it prints one [`SKIP_MARKER`] line
//! and returns, and `cargo xtask test` fails when it sees that line unless it was
//! given `--allow-skip`. This file is also the one reader of the `CI` variable: test
//! crates that cannot depend on `cascade-tests` (dataplane, eBPF) and xtask include
//! it by path.

use std::ffi::OsStr;
use std::io::Write;

/// Starts the line a skipped test prints on stderr (not captured by the test harness);
/// `cargo xtask test` counts these lines.
pub const SKIP_MARKER: &str = "cascade-test-skipped:";

/// True when running in CI: `CI` set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var_os("CI").as_deref())
}

/// How a value of `CI` reads: anything but unset, empty, `0` or `false` (any case)
/// means CI.
pub fn ci_value_means_ci(value: Option<&OsStr>) -> bool {
    match value.map(OsStr::to_string_lossy) {
        None => false,
        Some(v) => {
            let v = v.trim();
            !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
        }
    }
}

/// Called when something the running test needs is missing: under CI this panics (a
/// missing component must not turn into a silently passing test); elsewhere it prints
/// the skip marker with the test's name and `what`, and returns `false` so the test
/// can `return`.
pub fn skip(what: &str) -> bool {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    if in_ci() {
        panic!("{test}: required here but missing: {what}");
    }
    // Straight to the process's stderr, past the test harness's output capture, so
    // that a skip shows (and xtask sees it) even when the test "passes".
    let _ = writeln!(
        std::io::stderr(),
        "{SKIP_MARKER} {test}: missing {what} (this fails in CI and under `cargo xtask test`)"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        for (value, ci) in [
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("false"), false),
            (Some("FALSE"), false),
            (Some("1"), true),
            (Some("true"), true),
            (Some("yes"), true),
        ] {
            assert_eq!(ci_value_means_ci(value.map(OsStr::new)), ci, "{value:?}");
        }
    }
}
