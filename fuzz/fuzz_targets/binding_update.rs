#![no_main]
//! `cargo xtask fuzz binding_update`: see `hagent::fuzzing::binding_update`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hagent::fuzzing::binding_update(data));
