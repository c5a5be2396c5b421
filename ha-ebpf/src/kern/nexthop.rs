//! Next-hop resolution for packets the data plane forwards: `bpf_fib_lookup`, fronted by a
//! per-destination cache that the daemon invalidates (by bumping the epoch) on every route,
//! neighbour or link change. The FIB lookup is most of the cost of forwarding a packet in XDP
//! (about 250 of 275 ns on the reference machine); the cache skips it.

use core::ffi::c_void;

use aya_ebpf::{bindings::bpf_fib_lookup as FibParams, helpers::bpf_fib_lookup};
use ha_common::{abi::NextHop, stats::Counter};

use aya_ebpf::{macros::map, maps::PerCpuArray};

use super::maps::{HA_NEXTHOPS, nexthop_cache, nexthop_epoch};

/// Scratch space for `bpf_fib_lookup`'s parameters, one per CPU.
#[map(name = "HA_FIB_SCRATCH")]
static HA_FIB_SCRATCH: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

const AF_INET6: u8 = 10;
const FIB_SUCCESS: i64 = 0;
const FIB_BLACKHOLE: i64 = 1;
const FIB_UNREACHABLE: i64 = 2;
const FIB_PROHIBIT: i64 = 3;
const FIB_NO_NEIGH: i64 = 7;
const FIB_FRAG_NEEDED: i64 = 8;

/// Where a packet goes.
pub enum Route {
    /// Out of `ifindex` with these MACs.
    Forward(NextHop),
    /// The packet (of the `tot_len` asked about) exceeds the path MTU, given here.
    TooBig(u32),
    /// The route goes out of this interface, but the next hop's MAC is not known yet.
    NoNeigh(u32),
    /// Leave it to the kernel, counting why.
    Pass(Counter),
    /// Drop it, counting why.
    Drop(Counter),
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    // SAFETY: [u8; 16] and [u32; 4] have the same size; the FIB wants network-order bytes.
    unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(*a) }
}

/// `BPF_FIB_LOOKUP_OUTPUT`: look up as the sender of a locally originated packet (no check
/// that the interface forwards; a mobile node is a host).
pub const FIB_OUTPUT: u32 = 1 << 1;

/// Resolves the next hop for an IPv6 packet `src → dst` of `tot_len` bytes (L3; 0 skips the
/// MTU check) that arrived on (or, with [`FIB_OUTPUT`], leaves from) `ifindex`. `ctx` is the
/// program's context (xdp_md or __sk_buff).
///
#[inline(always)]
pub fn resolve(
    ctx: *mut c_void,
    ifindex: u32,
    src: &[u8; 16],
    dst: &[u8; 16],
    tot_len: usize,
    flags: u32,
) -> Route {
    let cache = nexthop_cache();
    let epoch = nexthop_epoch();
    if cache {
        // SAFETY: the entry is copied before any other map operation.
        if let Some(nh) = unsafe { HA_NEXTHOPS.get(dst) } {
            let nh = *nh;
            if nh.epoch == epoch {
                if tot_len > nh.mtu as usize {
                    return Route::TooBig(nh.mtu);
                }
                return Route::Forward(nh);
            }
        }
    }
    if tot_len > u16::MAX as usize {
        return Route::Pass(Counter::PassFibOther);
    }
    // The parameters live in a per-CPU scratch slot, not on the stack (64 bytes of 512).
    let Some(slot) = HA_FIB_SCRATCH.get_ptr_mut(0) else {
        return Route::Pass(Counter::PassFibOther);
    };
    // SAFETY: this CPU's slot, valid for the run; bpf_fib_lookup is plain old data, for
    // which all-zero is a valid value.
    let p = unsafe {
        core::ptr::write_bytes(slot, 0, 1);
        &mut *slot
    };
    p.family = AF_INET6;
    p.ifindex = ifindex;
    p.__bindgen_anon_1.tot_len = tot_len as u16;
    p.__bindgen_anon_3.ipv6_src = words(src);
    p.__bindgen_anon_4.ipv6_dst = words(dst);
    // SAFETY: `p` is a properly sized, initialised bpf_fib_lookup in a map value.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx,
            p as *mut FibParams,
            core::mem::size_of::<FibParams>() as i32,
            flags,
        )
    };
    // SAFETY: union field written by the kernel (mtu_result shares storage with tot_len).
    let mtu = unsafe { p.__bindgen_anon_1.mtu_result } as u32;
    match rc {
        FIB_SUCCESS => {
            let nh = NextHop {
                epoch,
                ifindex: p.ifindex,
                mtu,
                smac: p.smac,
                dmac: p.dmac,
                _pad: [0; 4],
            };
            // The kernel reports the egress MTU on success (≥ 5.12); without it we cannot
            // answer later MTU questions from the cache, so we do not cache.
            if cache && mtu != 0 {
                let _ = HA_NEXTHOPS.insert(dst, nh, 0);
            }
            Route::Forward(nh)
        }
        FIB_FRAG_NEEDED => Route::TooBig(mtu),
        FIB_NO_NEIGH => Route::NoNeigh(p.ifindex),
        FIB_BLACKHOLE | FIB_UNREACHABLE | FIB_PROHIBIT => Route::Drop(Counter::DropFibUnreachable),
        _ => Route::Pass(Counter::PassFibOther),
    }
}
