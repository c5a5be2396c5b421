#![no_main]
//! `cargo xtask fuzz registration`: see `hagent::fuzzing::registration`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::registration(data));
