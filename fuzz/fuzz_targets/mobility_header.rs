#![no_main]
//! `cargo xtask fuzz mobility_header`: see `hagent::fuzzing::mobility_header`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::mobility_header(data));
