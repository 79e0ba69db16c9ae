//! Reports: the terminal table, the ratios against the raw relay and between data-plane
//! backends, the JSON file and the SVG plot under `bench/out/`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use crate::scenario::{RampResult, StepRecord};

/// One comparison of two targets at the same scenario and N.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    pub(crate) what: String,
    pub(crate) scenario: String,
    pub(crate) n: usize,
    pub(crate) pps_ratio: f64,
    /// CPU per forwarded packet of the first over the second (at their maxima).
    pub(crate) cpu_ratio: Option<f64>,
    /// The target the ratio should reach, when there is one.
    pub(crate) goal: Option<f64>,
}

/// Everything written to the JSON file.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) created_unix: u64,
    pub(crate) quick: bool,
    pub(crate) cpus: usize,
    pub(crate) server_bin: String,
    pub(crate) server_workers: Option<usize>,
    pub(crate) dataplanes: Vec<(String, bool)>,
    pub(crate) notes: Vec<String>,
    pub(crate) results: Vec<RampResult>,
    pub(crate) ratios: Vec<Ratio>,
    pub(crate) steps: Vec<StepRecord>,
}

fn find<'a>(
    results: &'a [RampResult],
    scenario: &str,
    target: &str,
    n: usize,
) -> Option<&'a RampResult> {
    results
        .iter()
        .find(|r| r.scenario == scenario && r.target == target && r.n == n)
}

/// Ratios of `num` over `den` for every (scenario, N) both have.
pub(crate) fn ratios(
    results: &[RampResult],
    num: &str,
    den: &str,
    goal: Option<f64>,
) -> Vec<Ratio> {
    let mut out = Vec::new();
    for r in results.iter().filter(|r| r.target == num) {
        let Some(d) = find(results, &r.scenario, den, r.n) else {
            continue;
        };
        if d.max_forwarded_pps <= 0.0 {
            continue;
        }
        let cpu = |x: &RampResult| x.at_max.as_ref().and_then(|s| s.cpu_s_per_mpkt);
        out.push(Ratio {
            what: format!("{num} / {den}"),
            scenario: r.scenario.clone(),
            n: r.n,
            pps_ratio: r.max_forwarded_pps / d.max_forwarded_pps,
            cpu_ratio: match (cpu(r), cpu(d)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
            goal,
        });
    }
    out
}

pub(crate) fn opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

/// Thousands separators for a packet rate.
pub(crate) fn pps(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The terminal table: one line per ramp, then the ratios.
pub(crate) fn table(results: &[RampResult], ratios: &[Ratio]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<22} {:>4} {:>5} {:>12} {:>7} {:>6} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6}",
        "scenario",
        "target",
        "N",
        "sess",
        "max fwd pps",
        "srv/rx",
        "loss%",
        "limit",
        "CPU s/M",
        "s/M in+out",
        "p50 µs",
        "p99 µs",
        "p999 µs",
        "RSS KiB/s",
        "×raw",
        "bg CPU"
    );
    for r in results {
        let m = r.at_max.as_ref();
        let h = r.at_half.as_ref();
        let srv = m.and_then(|m| m.server_out_pps.map(|o| o / m.forwarded_pps.max(1.0)));
        let raw = ratios
            .iter()
            .find(|x| {
                x.what == format!("{} / raw-relay", r.target)
                    && x.n == r.n
                    && x.scenario == r.scenario
            })
            .map(|x| x.pps_ratio);
        let bg = m.and_then(|m| m.other_cpu_s.map(|c| c / (m.secs + m.drain_secs)));
        let _ = writeln!(
            s,
            "{:<8} {:<22} {:>4} {:>5} {:>12} {:>7} {:>6} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6}",
            r.scenario,
            r.target,
            r.n,
            r.sessions,
            pps(r.max_forwarded_pps),
            opt(srv, 3),
            opt(m.map(|m| m.loss_pct), 2),
            r.limited_by,
            opt(m.and_then(|m| m.cpu_s_per_mpkt), 2),
            opt(m.and_then(|m| m.cpu_s_per_mpkt_handled), 2),
            opt(h.map(|h| h.latency.p50_us), 0),
            opt(h.map(|h| h.latency.p99_us), 0),
            opt(h.map(|h| h.latency.p999_us), 0),
            opt(r.rss_kib_per_session, 1),
            opt(raw, 2),
            opt(bg, 2),
        );
    }
    let mut whats: Vec<&str> = ratios.iter().map(|r| r.what.as_str()).collect();
    whats.dedup();
    let whats: BTreeSet<&str> = whats.into_iter().collect();
    for what in whats {
        let rs: Vec<&Ratio> = ratios.iter().filter(|r| r.what == what).collect();
        let goal = rs.first().and_then(|r| r.goal);
        let mut line = format!("pps ratio {what}:");
        for r in &rs {
            let _ = write!(line, " {} N={} {:.2}", r.scenario, r.n, r.pps_ratio);
            if let Some(c) = r.cpu_ratio {
                let _ = write!(line, " (CPU/pkt ×{c:.2})");
            }
            line.push(';');
        }
        if let Some(g) = goal {
            let met = rs.iter().all(|r| r.pps_ratio >= g);
            let _ = write!(
                line,
                " goal ≥ {g:.2}: {}",
                if met { "met" } else { "NOT met" }
            );
        }
        let _ = writeln!(s, "{line}");
    }
    s
}

/// Writes `<stem>.json` and `<stem>.svg` in `dir`, and copies them to `latest.*`.
pub(crate) fn write_files(
    dir: &Path,
    stem: &str,
    report: &Report,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{stem}.json"));
    let svg = dir.join(format!("{stem}.svg"));
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)?;
    plot(&svg, &report.results)?;
    let _ = std::fs::copy(&json, dir.join("latest.json"));
    let _ = std::fs::copy(&svg, dir.join("latest.svg"));
    Ok((json, svg))
}

/// Writes `<stem>.json` in `dir` and copies it to `<latest>.json`; returns its path.
pub(crate) fn write_json(
    dir: &Path,
    stem: &str,
    latest: &str,
    value: &impl Serialize,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let _ = std::fs::copy(&json, dir.join(format!("{latest}.json")));
    Ok(json)
}

/// Maximum forwarded packet rate against N, one line per target, for `fanout`.
fn plot(path: &Path, results: &[RampResult]) -> anyhow::Result<()> {
    let fan: Vec<&RampResult> = results.iter().filter(|r| r.scenario == "fanout").collect();
    let mut targets: Vec<&str> = Vec::new();
    for r in &fan {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    let max_n = fan.iter().map(|r| r.n).max().unwrap_or(1).max(2) as f64;
    let max_pps = fan
        .iter()
        .map(|r| r.max_forwarded_pps)
        .fold(1.0f64, f64::max)
        * 1.45;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Cascade fan-out: highest forwarded rate with loss ≤ 1 %",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..max_n * 1.2).log_scale(), 0f64..max_pps)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("subscribers per publisher (N)")
        .y_desc("forwarded packets/s")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1e3))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let palette = [&RED, &BLUE, &BLACK, &GREEN, &MAGENTA, &CYAN];
    for (i, t) in targets.iter().enumerate() {
        let color = palette[i % palette.len()];
        let mut pts: Vec<(f64, f64)> = fan
            .iter()
            .filter(|r| r.target == *t)
            .map(|r| (r.n as f64, r.max_forwarded_pps))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(t.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
