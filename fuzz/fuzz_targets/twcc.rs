//! Fuzz target: [`cascade_fuzz::twcc::run`].
#![cfg_attr(fuzzing, no_main)]

cascade_fuzz::fuzz_target_main!(cascade_fuzz::twcc::run);
