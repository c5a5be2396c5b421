//! Every map and read-only global of the object. Sizes here are placeholders: the loader sets
//! the real ones from the configuration (`EbpfLoader::set_max_entries`).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use ha_common::{
    abi::{
        BindingCounters, BindingEntry, BindingRecord, Iface, NextHop, ROLE_HOME_AGENT, RateLimit,
    },
    stats::{Counter, CounterValue},
};

#[map(name = "HA_COUNTERS")]
pub static HA_COUNTERS: PerCpuArray<CounterValue> =
    PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "HA_BINDINGS")]
pub static HA_BINDINGS: HashMap<[u8; 16], BindingEntry> = HashMap::with_max_entries(1024, 0);

#[map(name = "HA_PREFIXES")]
pub static HA_PREFIXES: LpmTrie<[u8; 16], BindingEntry> =
    LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

#[map(name = "HA_LOCAL_ADDRS")]
pub static HA_LOCAL_ADDRS: HashMap<[u8; 16], u32> = HashMap::with_max_entries(64, 0);

#[map(name = "HA_DEVMAP")]
pub static HA_DEVMAP: DevMapHash = DevMapHash::with_max_entries(64, 0);

#[map(name = "HA_BIND_CNT")]
pub static HA_BIND_CNT: PerCpuArray<BindingCounters> = PerCpuArray::with_max_entries(1024, 0);

#[map(name = "HA_NEXTHOPS")]
pub static HA_NEXTHOPS: LruHashMap<[u8; 16], NextHop> = LruHashMap::with_max_entries(1024, 0);

/// Slot 0: the next-hop epoch. Slot 1: the number of mobile network prefixes installed
/// (when 0, the programs skip the LPM trie, the dearer lookup).
#[map(name = "HA_NH_EPOCH")]
pub static HA_STATE: Array<u64> = Array::with_max_entries(2, 0);

#[map(name = "HA_ICMP_RL")]
pub static HA_ICMP_RL: PerCpuArray<RateLimit> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "HA_PUNT")]
pub static HA_PUNT: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Home agent: where an ESP-protected BA goes when its HoA has no binding (a refusal): HoA →
/// CoA, written by the daemon right before it sends one. LRU: stale entries age out.
#[map(name = "HA_SIGNAL_COA")]
pub static HA_SIGNAL_COA: LruHashMap<[u8; 16], [u8; 16]> = LruHashMap::with_max_entries(256, 0);

#[map(name = "HA_IFACES")]
pub static HA_IFACES: HashMap<u32, Iface> = HashMap::with_max_entries(64, 0);

/// Home agent: DAD probes in flight (address → `DAD_PROBING`/`DAD_CONFLICT`).
#[map(name = "HA_DAD")]
pub static HA_DAD: HashMap<[u8; 16], u32> = HashMap::with_max_entries(1024, 0);

/// Home agent: HoAs whose kernel neighbour entry the TC program made point at this node.
#[map(name = "HA_ND_SEEN")]
pub static HA_ND_SEEN: LruHashMap<[u8; 16], u32> = LruHashMap::with_max_entries(1024, 0);

/// The daemon's binding records (see `BindingRecord`): pinned with the other maps so that a
/// restarted daemon finds its binding cache; no program reads it.
#[map(name = "HA_RECORDS")]
pub static HA_RECORDS: HashMap<[u8; 16], BindingRecord> = HashMap::with_max_entries(1024, 0);

/// Slot 0: the layout version of the maps pinned with this one (`LAYOUT_VERSION`).
#[map(name = "HA_LAYOUT")]
pub static HA_LAYOUT: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU scratch space for what would not fit the programs' 512-byte stack: the Destination
/// Options header being scanned, the frame bytes a benchmark run restores.
#[map(name = "HA_SCRATCH")]
pub static HA_SCRATCH: PerCpuArray<[u8; 64]> = PerCpuArray::with_max_entries(1, 0);

// Read-only globals (.rodata), set by the loader before the verifier sees the program, so the
// branches on them are resolved at load time.
#[unsafe(no_mangle)]
static HA_CFG_ROLE: u8 = ROLE_HOME_AGENT;
#[unsafe(no_mangle)]
static HA_CFG_OUTER_HOP_LIMIT: u8 = 64;
#[unsafe(no_mangle)]
static HA_CFG_NEXTHOP_CACHE: u8 = 1;
#[unsafe(no_mangle)]
static HA_CFG_ICMP_RATE: u32 = 100;
#[unsafe(no_mangle)]
static HA_CFG_BENCH_RESTORE: u8 = 0;

#[inline(always)]
fn read<T: Copy>(v: &T) -> T {
    // SAFETY: a valid reference; volatile so the compiler keeps the load the loader patches.
    unsafe { core::ptr::read_volatile(v) }
}

#[inline(always)]
pub fn role() -> u8 {
    read(&HA_CFG_ROLE)
}
#[inline(always)]
pub fn outer_hop_limit() -> u8 {
    read(&HA_CFG_OUTER_HOP_LIMIT)
}
#[inline(always)]
pub fn nexthop_cache() -> bool {
    read(&HA_CFG_NEXTHOP_CACHE) != 0
}
#[inline(always)]
pub fn icmp_rate() -> u32 {
    read(&HA_CFG_ICMP_RATE)
}
/// Whether this CPU may send one more ICMPv6 error now (RFC 4443 §2.4 (f)): the one token
/// bucket XDP and TC share, at the configured rate.
#[inline(always)]
pub fn icmp_error_allowed() -> bool {
    match HA_ICMP_RL.get_ptr_mut(0) {
        // SAFETY: per-CPU slot of this CPU, valid for the run; plain helper call.
        Some(state) => ha_ebpf::ratelimit::allow(
            unsafe { &mut *state },
            unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
            icmp_rate(),
        ),
        None => false,
    }
}
#[inline(always)]
pub fn bench_restore() -> bool {
    read(&HA_CFG_BENCH_RESTORE) != 0
}

/// Adds one packet of `bytes` to a global counter.
#[inline(always)]
pub fn count(counter: Counter, bytes: usize) {
    if let Some(slot) = HA_COUNTERS.get_ptr_mut(counter.index()) {
        // SAFETY: this CPU's copy of a per-CPU array element, valid for the program's run;
        // programs do not migrate between CPUs while running.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes as u64;
        }
    }
}

/// Adds a tunnelled (towards the MN) or reverse-tunnelled packet to a binding's counters.
#[inline(always)]
pub fn count_binding(binding_id: u32, reverse: bool, bytes: usize) {
    if let Some(slot) = HA_BIND_CNT.get_ptr_mut(binding_id) {
        // SAFETY: as in `count`.
        unsafe {
            if reverse {
                (*slot).reverse_packets += 1;
                (*slot).reverse_bytes += bytes as u64;
            } else {
                (*slot).tunnelled_packets += 1;
                (*slot).tunnelled_bytes += bytes as u64;
            }
        }
    }
}

/// The binding for `addr`: the exact HoA first, then the longest mobile network prefix.
#[inline(always)]
pub fn lookup_binding(addr: &[u8; 16]) -> Option<BindingEntry> {
    // SAFETY: the value is copied out before any other map operation.
    if let Some(b) = unsafe { HA_BINDINGS.get(addr) } {
        return Some(*b);
    }
    if HA_STATE.get(1).copied().unwrap_or(1) == 0 {
        return None;
    }
    HA_PREFIXES.get(Key::new(128, *addr)).copied()
}

/// The binding of exactly the home address `addr` (no prefix match).
#[inline(always)]
pub fn lookup_hoa(addr: &[u8; 16]) -> Option<BindingEntry> {
    // SAFETY: the value is copied out before any other map operation.
    unsafe { HA_BINDINGS.get(addr) }.copied()
}

/// Whether `addr` is one of this node's tunnel endpoint addresses.
#[inline(always)]
pub fn is_local(addr: &[u8; 16]) -> bool {
    HA_LOCAL_ADDRS.get_ptr(addr).is_some()
}

/// The current next-hop epoch.
#[inline(always)]
pub fn nexthop_epoch() -> u64 {
    HA_STATE.get(0).copied().unwrap_or(0)
}
