//! Replays every checked-in input of every fuzz target (`fuzz/corpus/<target>` and
//! `fuzz/regressions/<target>`) on stable: what a fuzz run found once stays fixed
//! without nightly or libFuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};

#[test]
fn every_corpus_input_runs_without_panicking() {
    let mut failures = Vec::new();
    for &(name, body) in cascade_fuzz::TARGETS {
        let files = cascade_fuzz::corpus_files(name).expect("corpus readable");
        assert!(!files.is_empty(), "target {name} has no corpus");
        for file in files {
            let data = std::fs::read(&file).expect("corpus file readable");
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
