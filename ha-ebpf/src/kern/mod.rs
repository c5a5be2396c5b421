//! Kernel-side glue: maps, configuration globals, counters, the next-hop resolver and the
//! program bodies. Compiled for the BPF target only.

pub mod icmp;
pub mod maps;
pub mod nexthop;
pub mod reference;
pub mod tc;
pub mod xdp;
