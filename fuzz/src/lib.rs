//! Fuzz targets for everything Cascade reads from the network: STUN, RTP, RTCP
//! (compound, NACK, transport-cc, REMB), SDP through the SFU's publish, subscribe and
//! PATCH, DTLS record framing, the HTTP bodies of PATCH (JSON preferences, trickle ICE
//! fragments) and SRTP/SRTCP-authenticated garbage through the forwarding table.
//!
//! Each target is a plain `fn run(&[u8])` here, so two drivers share it: the binaries in
//! `fuzz_targets/` (libFuzzer under `cargo fuzz`, nightly) and the stable replay of the
//! checked-in corpus (`tests/corpus.rs`, `cargo test -p cascade-fuzz`). A target must
//! never panic; it may only assert properties that hold for every input.

pub mod dtls;
pub mod http_body;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod srtp_table;
pub mod stun;
pub mod twcc;

mod fixtures;

use std::path::{Path, PathBuf};

/// A target's body: one input, no panic.
pub type Target = fn(&[u8]);

/// Every target by name, as `cargo fuzz` and the corpus directories name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("dtls", dtls::run),
    ("http_body", http_body::run),
    ("rtcp", rtcp::run),
    ("rtp", rtp::run),
    ("sdp", sdp::run),
    ("srtp_table", srtp_table::run),
    ("stun", stun::run),
    ("twcc", twcc::run),
];

/// The checked-in inputs of `target`: its minimised corpus and its regression inputs
/// (crashes found once and fixed), in a stable order.
pub fn corpus_files(target: &str) -> std::io::Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        if !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `body` on every file named on the command line: what a target binary does when
/// it is built without libFuzzer.
pub fn replay_args(body: Target) {
    for arg in std::env::args_os().skip(1) {
        match std::fs::read(&arg) {
            Ok(data) => body(&data),
            Err(e) => eprintln!("{}: {e}", Path::new(&arg).display()),
        }
    }
}

/// The `main` of a target binary: libFuzzer's entry point under `cargo fuzz`
/// (`--cfg fuzzing`), a replayer of the files given as arguments otherwise.
#[macro_export]
macro_rules! fuzz_target_main {
    ($body:path) => {
        #[cfg(fuzzing)]
        libfuzzer_sys::fuzz_target!(|data: &[u8]| $body(data));

        #[cfg(not(fuzzing))]
        fn main() {
            $crate::replay_args($body);
        }
    };
}

/// Splits `data` into at most `n` parts at 0xFF bytes (never part of UTF-8 text, so a
/// text target can take several documents from one input).
pub(crate) fn split_parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == 0xFF).collect()
}
