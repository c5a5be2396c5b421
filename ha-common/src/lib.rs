//! Types and constants shared by the kernel side (`ha-ebpf`) and the user side (`hagent`).
//!
//! Everything that crosses the kernel/user boundary lives here, with a layout assertion, so the
//! two separately compiled sides can never disagree about a map's key or value. Boundary types
//! use only fixed-width integers and byte arrays: no `bool`, `Option` or enums with payload,
//! whose niche layouts are not an ABI.
#![cfg_attr(not(any(feature = "user", test)), no_std)]

pub mod abi;
pub mod bench;
pub mod mh;
pub mod nd;
pub mod stats;

/// Names of the maps in the eBPF object, so the loader and the programs agree on them.
pub mod maps {
    /// Per-CPU array of global counters, indexed by [`crate::stats::Counter`].
    pub const GLOBAL_COUNTERS: &str = "HA_COUNTERS";
    /// Hash map HoA → [`crate::abi::BindingEntry`].
    pub const BINDINGS: &str = "HA_BINDINGS";
    /// LPM trie mobile network prefix → [`crate::abi::BindingEntry`].
    pub const PREFIXES: &str = "HA_PREFIXES";
    /// Hash map of this node's tunnel endpoint addresses (HA addresses, or the MN's CoAs).
    pub const LOCAL_ADDRS: &str = "HA_LOCAL_ADDRS";
    /// Devmap of the interfaces the programs may redirect to (key = value = ifindex).
    pub const DEVMAP: &str = "HA_DEVMAP";
    /// Per-CPU array of [`crate::abi::BindingCounters`], indexed by binding id.
    pub const BINDING_COUNTERS: &str = "HA_BIND_CNT";
    /// LRU hash tunnel destination → [`crate::abi::NextHop`].
    pub const NEXTHOPS: &str = "HA_NEXTHOPS";
    /// Array of `u64`: slot [`STATE_NEXTHOP_EPOCH`] is the current next-hop epoch, slot
    /// [`STATE_PREFIX_COUNT`] the number of prefixes in [`PREFIXES`].
    pub const STATE: &str = "HA_NH_EPOCH";
    pub const STATE_NEXTHOP_EPOCH: u32 = 0;
    pub const STATE_PREFIX_COUNT: u32 = 1;
    /// Per-CPU [`crate::abi::RateLimit`] for generated ICMPv6 errors.
    pub const ICMP_RATELIMIT: &str = "HA_ICMP_RL";
    /// Ring buffer of [`crate::abi::PuntRecord`]s for the daemon.
    pub const PUNT: &str = "HA_PUNT";
    /// Home agent: HoA → CoA for an ESP-protected BA to a HoA without a binding (a refusal).
    pub const SIGNAL_COA: &str = "HA_SIGNAL_COA";
    /// Hash map ifindex → [`crate::abi::Iface`] of the interfaces the programs are attached to.
    pub const IFACES: &str = "HA_IFACES";
    /// Home agent: hash map address → `DAD_PROBING`/`DAD_CONFLICT` of the Duplicate Address
    /// Detection probes in flight; the daemon writes the probe, XDP notes a conflict.
    pub const DAD: &str = "HA_DAD";
    /// Home agent: LRU hash of the HoAs for which the TC program answered one of the kernel's
    /// own Neighbor Solicitations (so the kernel holds a neighbour entry for them pointing at
    /// this node, which the daemon deletes when the binding goes).
    pub const ND_SEEN: &str = "HA_ND_SEEN";
    /// Hash map HoA → [`crate::abi::BindingRecord`]: the daemon's binding cache, kept in the
    /// kernel so that it survives the daemon (the programs never read it).
    pub const RECORDS: &str = "HA_RECORDS";
    /// Array of one `u32`: the [`crate::abi::LAYOUT_VERSION`] of the maps pinned with it.
    pub const LAYOUT: &str = "HA_LAYOUT";
    /// Scratch space of the programs (per CPU).
    pub const SCRATCH: &str = "HA_SCRATCH";
}

/// Names of the read-only globals the loader sets before loading.
pub mod globals {
    /// `u8`: [`crate::abi::ROLE_HOME_AGENT`] or [`crate::abi::ROLE_MOBILE_NODE`].
    pub const ROLE: &str = "HA_CFG_ROLE";
    /// `u8`: hop limit of the outer header.
    pub const OUTER_HOP_LIMIT: &str = "HA_CFG_OUTER_HOP_LIMIT";
    /// `u8`: 1 to use the next-hop cache, 0 to call `bpf_fib_lookup` for every packet.
    pub const NEXTHOP_CACHE: &str = "HA_CFG_NEXTHOP_CACHE";
    /// `u32`: generated ICMPv6 errors per second per CPU.
    pub const ICMP_RATE: &str = "HA_CFG_ICMP_RATE";
    /// `u8`: benchmarks only — undo every packet change before returning, so that
    /// BPF_PROG_TEST_RUN's `repeat` runs the same path each time.
    pub const BENCH_RESTORE: &str = "HA_CFG_BENCH_RESTORE";
}

/// Names of the programs in the eBPF object.
pub mod programs {
    /// The XDP ingress program attached to every interface the node serves.
    pub const XDP_INGRESS: &str = "ha_xdp_ingress";
    /// Reference program: XDP_PASS and nothing else.
    pub const XDP_PASS: &str = "ha_xdp_pass";
    /// Reference program: a minimal IPv6 XDP router.
    pub const XDP_ROUTER: &str = "ha_xdp_router";
    /// The TC egress program: tunnels packets the node itself sends (or forwards through the
    /// kernel) to a bound HoA.
    pub const TC_EGRESS: &str = "ha_tc_egress";
}
