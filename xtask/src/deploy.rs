//! The `deploy/` step of `cargo xtask test`: validates, offline, what operators
//! install. yamllint over every YAML file; the Kubernetes manifests rendered with
//! `kubectl kustomize` (base and each overlay) and checked by `kubernetes-validate`
//! against [`KUBERNETES_VERSION`] (strict: unknown fields fail); the systemd unit with
//! `systemd-analyze verify` (against the built binary); the alert rules with
//! `promtool check rules`; the Grafana dashboard and the seccomp profile as JSON (the
//! profile must allow io_uring). yamllint and kubernetes-validate come from PyPI into
//! a virtualenv under the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::run;

/// The Kubernetes version the manifests are validated against.
pub(crate) const KUBERNETES_VERSION: &str = "1.31.0";

/// PyPI packages of the checks, pinned.
const PIP_PACKAGES: &[&str] = &["yamllint==1.38.0", "kubernetes-validate==1.37.0"];

/// Runs every check; what was checked, for the summary.
pub(crate) fn check(root: &Path, target: &Path, cascade_bin: &Path) -> anyhow::Result<String> {
    let deploy = root.join("deploy");
    let venv = python_tools(target)?;

    run(Command::new(venv.join("yamllint"))
        .args(["-s", "-c"])
        .arg(deploy.join(".yamllint.yaml"))
        .arg(&deploy))?;

    let rendered = target.join("deploy-rendered");
    std::fs::create_dir_all(&rendered)?;
    let kustomizations = ["base", "overlays/dev", "overlays/production"];
    for k in kustomizations {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(deploy.join("k8s").join(k))
            .output()
            .context("running `kubectl kustomize` (kubectl is needed to render deploy/k8s)")?;
        if !out.status.success() {
            bail!(
                "kubectl kustomize deploy/k8s/{k}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let file = rendered.join(format!("{}.yaml", k.replace('/', "-")));
        std::fs::write(&file, &out.stdout)?;
        run(Command::new(venv.join("kubernetes-validate"))
            .args(["-k", KUBERNETES_VERSION, "--strict", "--quiet"])
            .arg(&file))?;
    }

    // The unit names /usr/local/bin/cascade: verify a copy that names the build.
    let unit = std::fs::read_to_string(deploy.join("systemd").join("cascade.service"))?;
    let unit_dir = target.join("deploy-unit");
    std::fs::create_dir_all(&unit_dir)?;
    let copy = unit_dir.join("cascade.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/cascade", &cascade_bin.to_string_lossy()),
    )?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .context("running systemd-analyze")?;
    let complaints = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || complaints.contains("cascade.service") {
        bail!("systemd-analyze verify deploy/systemd/cascade.service:\n{complaints}");
    }

    run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy.join("prometheus").join("alerts.yaml")))?;

    let dashboard = json(&deploy.join("grafana").join("cascade-dashboard.json"))?;
    let panels = dashboard["panels"].as_array().map_or(0, Vec::len);
    if panels == 0 {
        bail!("the Grafana dashboard has no panels");
    }
    let seccomp = json(&deploy.join("seccomp.json"))?;
    let allowed: Vec<&str> = seccomp["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|r| r["names"].as_array().into_iter().flatten())
        .filter_map(|n| n.as_str())
        .collect();
    for needed in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        if !allowed.contains(&needed) {
            bail!("deploy/seccomp.json does not allow {needed}");
        }
    }
    Ok(format!(
        "yamllint, {} kustomizations valid for Kubernetes {KUBERNETES_VERSION}, unit, rules, \
         dashboard ({panels} panels), seccomp ({} syscalls)",
        kustomizations.len(),
        allowed.len()
    ))
}

fn json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The virtualenv's `bin` with the PyPI tools, made on first use.
fn python_tools(target: &Path) -> anyhow::Result<PathBuf> {
    let venv = target.join("deploy-venv");
    let bin = venv.join("bin");
    if !bin.join("kubernetes-validate").is_file() || !bin.join("yamllint").is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(bin.join("pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(PIP_PACKAGES))?;
    }
    Ok(bin)
}
