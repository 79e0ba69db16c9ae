//! Fuzz target: [`cascade_fuzz::srtp_table::run`].
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::fuzz_target_main!(cascade_fuzz::srtp_table::run);
