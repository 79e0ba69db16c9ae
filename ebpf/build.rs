//! Compiles the kernel programs in `bpf/` with clang-19 when it is installed.
//!
//! With clang-19 (and libbpf's headers) the object lands in `OUT_DIR` and the
//! crate is built with `cfg(cascade_ebpf_programs)`, which embeds it. Without
//! them the crate builds with no programs and says so in a cargo warning; the
//! server then runs in pure userspace. A compile error with the toolchain present
//! fails the build: a broken program must not silently turn the fast path off.
//!
//! `CASCADE_EBPF_CLANG` names the compiler to use instead, or `none` to build
//! without programs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The C sources and headers; all of them are rebuild triggers.
const SOURCES: &[&str] = &[
    "bpf/cascade.bpf.c",
    "bpf/cascade_maps.h",
    "bpf/cascade_parse.h",
];
const MAIN_SOURCE: &str = "bpf/cascade.bpf.c";
const OBJECT: &str = "cascade.bpf.o";
const LIBBPF_HEADER: &str = "/usr/include/bpf/bpf_helpers.h";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cascade_ebpf_programs)");
    println!("cargo::rerun-if-env-changed=CASCADE_EBPF_CLANG");
    println!("cargo::rerun-if-changed=build.rs");
    for source in SOURCES {
        println!("cargo::rerun-if-changed={source}");
    }

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if std::env::var_os("CASCADE_EBPF_CLANG").is_some_and(|c| c == "none") {
        println!(
            "cargo::warning=CASCADE_EBPF_CLANG=none: building cascade-ebpf without eBPF programs \
             (the server forwards in userspace)"
        );
        return;
    }
    let Some(clang) = find_clang() else {
        println!(
            "cargo::warning=clang-19 not found: building cascade-ebpf without eBPF programs \
             (the server forwards in userspace); install it with \
             `apt-get install clang-19 libbpf-dev`"
        );
        return;
    };
    if !Path::new(LIBBPF_HEADER).exists() {
        println!(
            "cargo::warning={LIBBPF_HEADER} not found: building cascade-ebpf without eBPF \
             programs (the server forwards in userspace); install it with \
             `apt-get install libbpf-dev`"
        );
        return;
    }

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join(OBJECT);
    let endian = std::env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_else(|_| "little".into());
    let bpf_target = if endian == "big" { "bpfeb" } else { "bpfel" };
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", bpf_target])
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg("-Ibpf");
    // The kernel uapi headers include <asm/...>, which Debian keeps per architecture.
    if let Some(multiarch) = multiarch_include() {
        cmd.arg(format!("-I{}", multiarch.display()));
    }
    cmd.args(["-c", MAIN_SOURCE, "-o"]).arg(&object);

    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => {
            println!(
                "cargo::warning=cannot run {}: {e}; building cascade-ebpf without eBPF programs",
                clang.display()
            );
            return;
        }
    };
    if !output.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}\n(set CASCADE_EBPF_CLANG=none to build without eBPF programs)",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("cargo::rustc-cfg=cascade_ebpf_programs");
    println!("cargo::rustc-env=CASCADE_EBPF_OBJECT={}", object.display());
}

/// `CASCADE_EBPF_CLANG`, else clang-19 in `PATH` or in LLVM's directory.
fn find_clang() -> Option<PathBuf> {
    if let Some(chosen) = std::env::var_os("CASCADE_EBPF_CLANG") {
        return Some(PathBuf::from(chosen));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("clang-19"))
        .chain([PathBuf::from("/usr/lib/llvm-19/bin/clang")])
        .find(|p| p.is_file())
}

/// Debian's per-architecture include directory, e.g. `/usr/include/x86_64-linux-gnu`.
fn multiarch_include() -> Option<PathBuf> {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "x86" => "i386-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triple);
    dir.is_dir().then_some(dir)
}
