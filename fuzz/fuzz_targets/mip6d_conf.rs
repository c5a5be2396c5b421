#![no_main]
//! `cargo xtask fuzz mip6d_conf`: see `hagent::fuzzing::mip6d_conf`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::mip6d_conf(data));
