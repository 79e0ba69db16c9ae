//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` for real (libFuzzer,
//! nightly), one at a time, and prints executions and wall time per target.
//!
//! Each run starts from the checked-in corpus (`fuzz/corpus/<target>`, read-only) and
//! the regression inputs (`fuzz/regressions/<target>`), and writes what it finds to a
//! scratch corpus under the target directory, so a run never changes the repository;
//! `--cmin` then merges the scratch corpus into the checked-in one, minimised. A crash
//! input lands in `fuzz/artifacts/<target>/`. The stable replay of the checked-in
//! inputs is `cargo test -p cascade-fuzz`, part of `cargo xtask test`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

/// Build options of every `cargo fuzz` call (so `run` and `cmin` share one build):
/// more codegen units build much faster on a small machine for little speed.
const BUILD_ARGS: [&str; 2] = ["--codegen-units", "16"];

/// Seconds one input may take before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_S: u32 = 25;

#[derive(Debug, Args)]
pub(crate) struct FuzzArgs {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Merge each run's new inputs into `fuzz/corpus/<target>` and minimise it
    /// (`cargo fuzz cmin`).
    #[arg(long)]
    cmin: bool,
    /// Arguments passed to libFuzzer as they are (e.g. `-max_len=2048`), after `--`.
    #[arg(long = "libfuzzer-arg", value_name = "ARG", allow_hyphen_values = true)]
    libfuzzer_args: Vec<String>,
    /// Targets to run (default: every target of `cargo fuzz list`).
    targets: Vec<String>,
}

/// What one libFuzzer run reported.
#[derive(Debug)]
struct RunReport {
    target: String,
    runs: Option<u64>,
    /// Seconds libFuzzer itself ran (its `Done` line).
    fuzz_secs: Option<u64>,
    /// The whole `cargo fuzz run`, build included.
    wall: Duration,
    corpus_units: Option<u64>,
    crashed: bool,
}

pub(crate) fn fuzz(root: &Path, target_dir: &Path, args: &FuzzArgs) -> anyhow::Result<()> {
    let fuzz_dir = root.join("fuzz");
    let nightly = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .current_dir(&fuzz_dir)
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!(
            "`cargo +nightly fuzz` does not run here: install a nightly toolchain \
             (`rustup toolchain install nightly`) and cargo-fuzz (`cargo install cargo-fuzz`)"
        );
    }
    let targets = if args.targets.is_empty() {
        list_targets(&fuzz_dir)?
    } else {
        args.targets.clone()
    };
    let mut reports = Vec::new();
    for target in &targets {
        // A crash ends that target's run only: the others still get their time.
        let report = run_target(&fuzz_dir, target_dir, target, args)?;
        if args.cmin && !report.crashed {
            cmin(&fuzz_dir, target_dir, target)?;
        }
        reports.push(report);
    }
    println!("\n==> fuzz summary");
    for r in &reports {
        let wall = r.wall.as_secs_f64();
        let runs = r.runs.map_or("?".to_string(), |n| n.to_string());
        let secs = r.fuzz_secs.map_or("?".to_string(), |s| s.to_string());
        let rate = match (r.runs, r.fuzz_secs) {
            (Some(n), Some(s)) if s > 0 => format!("{}", n / s),
            _ => "?".to_string(),
        };
        let units = r.corpus_units.map_or("?".to_string(), |n| n.to_string());
        let outcome = if r.crashed { "CRASH" } else { "ok" };
        println!(
            "  {outcome:<6} {:<12} {runs:>12} execs in {secs:>5} s ({rate:>7} exec/s), corpus {units}; {wall:.0} s with the build",
            r.target
        );
    }
    let crashed: Vec<&str> = reports
        .iter()
        .filter(|r| r.crashed)
        .map(|r| r.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!(
            "crashed: {} (inputs in fuzz/artifacts/<target>/; fix them and add each input to fuzz/regressions/<target>/)",
            crashed.join(", ")
        );
    }
    Ok(())
}

fn list_targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "list"])
        .current_dir(fuzz_dir)
        .output()
        .context("cannot run cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn scratch_corpus(target_dir: &Path, target: &str) -> std::path::PathBuf {
    target_dir.join("fuzz-corpus").join(target)
}

fn run_target(
    fuzz_dir: &Path,
    target_dir: &Path,
    target: &str,
    args: &FuzzArgs,
) -> anyhow::Result<RunReport> {
    let scratch = scratch_corpus(target_dir, target);
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz", "run"])
        .args(BUILD_ARGS)
        .arg(target)
        .arg(&scratch)
        .arg(fuzz_dir.join("corpus").join(target));
    let regressions = fuzz_dir.join("regressions").join(target);
    if regressions.is_dir() {
        cmd.arg(&regressions);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={}", args.secs))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg("-print_final_stats=1")
        .args(&args.libfuzzer_args)
        .current_dir(fuzz_dir)
        .stderr(Stdio::piped());
    println!("\n==> fuzz {target} for {} s: {cmd:?}", args.secs);
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot run cargo fuzz run")?;
    let mut report = RunReport {
        target: target.to_owned(),
        runs: None,
        fuzz_secs: None,
        wall: Duration::ZERO,
        corpus_units: None,
        crashed: false,
    };
    // libFuzzer reports on stderr; pass every line on and keep the figures.
    let stderr = child.stderr.take().context("stderr is piped")?;
    let mut out = std::io::stderr();
    for line in BufReader::new(stderr).split(b'\n') {
        let line = line.context("reading libFuzzer's output")?;
        let _ = out.write_all(&line);
        let _ = out.write_all(b"\n");
        let text = String::from_utf8_lossy(&line);
        if let Some((runs, secs)) = done_line(&text) {
            report.runs = Some(runs);
            report.fuzz_secs = Some(secs);
        }
        if let Some(n) = text.strip_prefix("stat::number_of_executed_units:") {
            report.runs = n.trim().parse().ok().or(report.runs);
        }
        if let Some(n) = corpus_units(&text) {
            report.corpus_units = Some(n);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz run")?;
    report.wall = start.elapsed();
    report.crashed = !status.success();
    Ok(report)
}

/// `Done 123 runs in 60 second(s)`: the executions and seconds of the run.
fn done_line(line: &str) -> Option<(u64, u64)> {
    let mut words = line.strip_prefix("Done ")?.split_whitespace();
    let runs = words.next()?.parse().ok()?;
    let secs = words.nth(2)?.parse().ok()?;
    Some((runs, secs))
}

/// `#123 pulse cov: 10 ft: 20 corp: 7/1234b ...`: the corpus size at a status line.
fn corpus_units(line: &str) -> Option<u64> {
    let after = line.split_once(" corp: ")?.1;
    after.split('/').next()?.parse().ok()
}

/// Merges the scratch corpus into the checked-in one and minimises it.
fn cmin(fuzz_dir: &Path, target_dir: &Path, target: &str) -> anyhow::Result<()> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let scratch = scratch_corpus(target_dir, target);
    for entry in std::fs::read_dir(&scratch)? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            let dest = corpus.join(name);
            if !dest.exists() {
                std::fs::copy(&path, &dest)?;
            }
        }
    }
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "cmin"])
        .args(BUILD_ARGS)
        .arg(target)
        .arg(&corpus)
        .current_dir(fuzz_dir)
        .status()
        .context("cannot run cargo fuzz cmin")?;
    if !status.success() {
        bail!("cargo fuzz cmin {target} exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_figures() {
        assert_eq!(
            done_line("Done 123456 runs in 61 second(s)"),
            Some((123_456, 61))
        );
        assert_eq!(done_line("#2 INITED cov: 5"), None);
        assert_eq!(
            corpus_units("#4096 pulse  cov: 812 ft: 2201 corp: 143/9123b lim: 43 exec/s: 2048"),
            Some(143)
        );
    }
}
