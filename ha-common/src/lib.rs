//! Types and constants shared by the kernel side (`ha-ebpf`) and the user side (`hagent`).
//!
//! Everything that crosses the kernel/user boundary lives here, with a layout assertion, so the
//! two separately compiled sides can never disagree about a map's key or value. Boundary types
//! use only fixed-width integers and byte arrays: no `bool`, `Option` or enums with payload,
//! whose niche layouts are not an ABI.
#![cfg_attr(not(any(feature = "user", test)), no_std)]

pub mod stats;

/// Names of the maps in the eBPF object, so the loader and the programs agree on them.
pub mod maps {
    /// Per-CPU array of global counters, indexed by [`crate::stats::Counter`].
    pub const GLOBAL_COUNTERS: &str = "HA_COUNTERS";
}

/// Names of the programs in the eBPF object.
pub mod programs {
    /// The XDP ingress program attached to every interface the home agent serves.
    pub const XDP_INGRESS: &str = "ha_xdp_ingress";
}
