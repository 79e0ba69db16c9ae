//! Bundles the demo pages `cascade serve` embeds (`/call`, `/meeting`) from the SDK's
//! sources in `sdk/`, so `cargo build` is the only build step: installs the SDK's
//! locked npm dependencies when they are missing or older than `package-lock.json`
//! (`npm ci`), then runs `node demo/build.mjs` (esbuild) into `OUT_DIR/sdk-demo`.
//! Needs Node.js 20 or later and npm on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `demo/build.mjs` must leave in its output folder.
const PAGES: [&str; 4] = ["call.html", "call.js", "meeting.html", "meeting.js"];
const PACKAGES: [&str; 4] = ["core", "signal", "call", "callkit"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sdk = manifest
        .parent()
        .expect("control/ lives in the workspace")
        .join("sdk");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("sdk-demo");

    for path in ["package.json", "package-lock.json", "demo"] {
        rerun_if_changed(&sdk.join(path));
    }
    for package in PACKAGES {
        rerun_if_changed(&sdk.join("packages").join(package).join("src"));
        rerun_if_changed(&sdk.join("packages").join(package).join("package.json"));
    }

    install_dependencies(&sdk);
    std::fs::create_dir_all(&out).expect("create OUT_DIR/sdk-demo");
    run(
        Command::new("node")
            .arg("demo/build.mjs")
            .env("CASCADE_DEMO_OUTDIR", &out)
            .current_dir(&sdk),
        "node demo/build.mjs (bundling the demo pages)",
    );
    for page in PAGES {
        let file = out.join(page);
        if !file.is_file() {
            fail(&format!("demo/build.mjs did not write {}", file.display()));
        }
    }
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// `npm ci` when `node_modules` is missing or older than the lock file.
fn install_dependencies(sdk: &Path) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(&sdk.join("package-lock.json"));
    let installed = modified(&sdk.join("node_modules").join(".package-lock.json"));
    let fresh = matches!((lock, installed), (Some(l), Some(i)) if i >= l);
    if !fresh {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(sdk),
            "npm ci (the SDK's build dependencies)",
        );
    }
}

fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{what} failed: {status}")),
        Err(e) => fail(&format!(
            "{what} could not start ({e}): building the demo pages needs Node.js 20 or later and npm on the PATH"
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
