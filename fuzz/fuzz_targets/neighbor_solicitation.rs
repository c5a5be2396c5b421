#![no_main]
//! `cargo xtask fuzz neighbor_solicitation`: see `hagent::fuzzing::neighbor_solicitation`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::neighbor_solicitation(data));
