#![no_main]
//! `cargo xtask fuzz setkey_conf`: see `hagent::fuzzing::setkey_conf`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::setkey_conf(data));
