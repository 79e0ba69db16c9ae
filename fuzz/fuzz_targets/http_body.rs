//! Fuzz target: [`cascade_fuzz::http_body::run`].
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::fuzz_target_main!(cascade_fuzz::http_body::run);
