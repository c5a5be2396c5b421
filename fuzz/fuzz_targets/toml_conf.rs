#![no_main]
//! `cargo xtask fuzz toml_conf`: see `hagent::fuzzing::toml_conf`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::toml_conf(data));
