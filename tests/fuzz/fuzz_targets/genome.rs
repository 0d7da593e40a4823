//! libFuzzer target; the check is `checks::genome`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::genome(data));
