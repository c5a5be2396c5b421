//! The XDP ingress program: classify, then encapsulate (downlink), decapsulate (uplink, with
//! the RFC 6275 §10.4.5 ingress check), fix up signalling, or pass to the kernel.
//!
//! Every decision that needs the FIB is made before the packet is touched, so every fallback
//! can still pass the original frame. Every exit counts one reason.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use ha_common::{
    abi::{
        BINDING_F_IPSEC_PAYLOAD, BindingEntry, DAD_CONFLICT, NextHop, PUNT_HAO_LEN,
        PUNT_MAX_PACKET, PUNT_REASON_FRAGMENT, PUNT_REASON_HAO_NO_BINDING, PuntRecord,
        ROLE_MOBILE_NODE,
    },
    nd::{
        ICMPV6_NA, ICMPV6_NS, NA_CHECKSUM, NA_FRAME_LEN, NA_LEN, ND_HOP_LIMIT, ND_MIN_LEN,
        NS_MAX_LEN, check_ns_fields, proxy_reply, write_na_fields,
    },
    stats::Counter,
};
use ha_ebpf::{
    classify::never_tunnel,
    frame::Frame,
    hao::{DstOpts, HAO_SWAPPED, MAX_DSTOPTS_LEN, header_len, scan_dstopts},
    headers::{
        PTB_QUOTE_LEN, eth_header, icmp_error_ipv6, ptb_header, tunnel_mtu, write_tunnel_headers,
    },
    parse::{
        ETH_HLEN, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_ESP, IPPROTO_ICMPV6, IPPROTO_IPV6,
        IPPROTO_MH, IPPROTO_ROUTING, IPV6_HLEN, Ipv6, parse_ipv6, parse_l2,
    },
};

use super::{
    icmp,
    maps::{
        HA_DAD, HA_DEVMAP, HA_IFACES, HA_PUNT, HA_SCRATCH, bench_restore, count, count_binding,
        icmp_error_allowed, is_local, lookup_binding, lookup_hoa, outer_hop_limit, role,
    },
    nexthop::{Route, resolve},
};

/// The XDP context as a [`Frame`]. Re-create it after every `adjust_head`/`adjust_tail`.
pub struct Pkt<'a>(pub &'a XdpContext);

impl Frame for Pkt<'_> {
    #[inline(always)]
    fn start(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.0.data_end()
    }
}

/// Offset of the IPv6 header of an untagged frame, and of the inner header of a tunnel packet.
const L3: usize = ETH_HLEN;
const INNER: usize = ETH_HLEN + IPV6_HLEN;

#[inline(always)]
fn pass(c: Counter, len: usize) -> u32 {
    count(c, len);
    XDP_PASS
}

#[inline(always)]
fn drop(c: Counter, len: usize) -> u32 {
    count(c, len);
    XDP_DROP
}

#[inline(always)]
pub fn raw(ctx: &XdpContext) -> *mut c_void {
    ctx.ctx as *mut c_void
}

#[inline(always)]
pub fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    // SAFETY: ctx.ctx is the kernel's xdp_md for this run.
    unsafe { (*ctx.ctx).ingress_ifindex }
}

/// Writes `bytes` at `offset`, or fails if the frame is too short.
#[inline(always)]
pub fn store<const N: usize>(ctx: &XdpContext, offset: usize, bytes: &[u8; N]) -> Result<(), ()> {
    let p = Pkt(ctx).ptr_at_mut::<[u8; N]>(offset).ok_or(())?;
    // SAFETY: `ptr_at_mut` checked that N bytes at `p` are inside the frame.
    unsafe { core::ptr::write_unaligned(p, *bytes) };
    Ok(())
}

#[inline(always)]
pub fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<[u8; N], ()> {
    Pkt(ctx).load::<[u8; N]>(offset).ok_or(())
}

#[inline(always)]
fn adjust_head(ctx: &XdpContext, delta: i32) -> Result<(), ()> {
    // SAFETY: helper call on our own context; every pointer is re-derived afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } == 0 {
        Ok(())
    } else {
        Err(())
    }
}

/// Where a rewritten frame leaves, chosen before the frame is touched (so a refusal can pass it
/// unchanged): back out of the ingress interface, or redirected to another interface the data
/// plane manages. For a redirect, `bpf_redirect_map` is called here: its lookup is the check
/// that the interface is in `HA_DEVMAP` (one lookup per packet, not a `get` and then the
/// redirect's own), and the target it records is used only if the program returns
/// XDP_REDIRECT — every other verdict discards it.
#[derive(Clone, Copy)]
struct Egress(u32);

#[inline(always)]
fn egress(ctx: &XdpContext, ifindex: u32) -> Option<Egress> {
    if ifindex == ingress_ifindex(ctx) {
        return Some(Egress(XDP_TX));
    }
    HA_DEVMAP
        .redirect(ifindex, XDP_PASS as u64)
        .ok()
        .map(Egress)
}

/// Sends a rewritten frame where [`egress`] chose, counting it as `tx` (out of the ingress
/// interface) or `redirect`.
#[inline(always)]
fn transmit(out: Egress, tx: Counter, redirect: Counter, len: usize) -> u32 {
    count(if out.0 == XDP_TX { tx } else { redirect }, len);
    out.0
}

/// The entry point's work. Neighbor Discovery on a home link goes to its own function; both are
/// BPF subprograms of the entry, so their stack frames never add up within the verifier's
/// 512-byte limit.
#[inline(always)]
pub fn entry(ctx: &XdpContext) -> u32 {
    if role() != ROLE_MOBILE_NODE && is_neighbour_discovery(ctx) {
        return neighbour_discovery(ctx);
    }
    ingress(ctx)
}

/// An untagged IPv6 frame carrying a Neighbor Solicitation or Advertisement right after the
/// IPv6 header.
#[inline(always)]
fn is_neighbour_discovery(ctx: &XdpContext) -> bool {
    let Ok(h) = load::<4>(ctx, 12) else {
        return false;
    };
    if u16::from_be_bytes([h[0], h[1]]) != ETH_P_IPV6 {
        return false;
    }
    matches!(load::<1>(ctx, L3 + 6), Ok([IPPROTO_ICMPV6]))
        && matches!(load::<1>(ctx, INNER), Ok([ICMPV6_NS | ICMPV6_NA]))
}

#[inline(never)]
fn ingress(ctx: &XdpContext) -> u32 {
    let f = Pkt(ctx);
    let len = f.len();
    count(Counter::RxFrames, len);
    let Ok(l2) = parse_l2(&f) else {
        return pass(Counter::PassMalformed, len);
    };
    if l2.ethertype != ETH_P_IPV6 {
        return pass(Counter::PassNotIpv6, len);
    }
    count(Counter::RxIpv6, len);
    if l2.l3_offset != L3 {
        return pass(Counter::PassVlan, len);
    }
    let Ok(ip) = parse_ipv6(&f, L3) else {
        return pass(Counter::PassMalformed, len);
    };
    // Only tunnel packets and signalling with destination options need to know whether the
    // destination is ours; anything else for us is unbound (a HoA is never an address of this
    // node) and passes below — so the common paths skip this lookup.
    if (ip.next_header == IPPROTO_IPV6
        || ip.next_header == IPPROTO_DSTOPTS
        || ip.next_header == IPPROTO_ROUTING)
        && is_local(&ip.dst)
    {
        return match ip.next_header {
            IPPROTO_IPV6 => decap(ctx, &ip, len),
            IPPROTO_ROUTING if role() == ROLE_MOBILE_NODE => routing_header_2(ctx, &ip, len),
            IPPROTO_ROUTING => pass(Counter::PassLocal, len),
            _ => signalling(ctx, &ip, len),
        };
    }
    if role() == ROLE_MOBILE_NODE {
        // A mobile node only terminates tunnels; everything else is the kernel's.
        return pass(Counter::PassNoBinding, len);
    }
    downlink(ctx, &ip, len)
}

/// A packet for an address that is not ours: tunnel it if its destination is bound.
#[inline(always)]
fn downlink(ctx: &XdpContext, ip: &Ipv6, len: usize) -> u32 {
    let icmp_type = if ip.next_header == IPPROTO_ICMPV6 {
        match load::<1>(ctx, INNER) {
            Ok([t]) => t,
            Err(()) => return pass(Counter::PassMalformed, len),
        }
    } else {
        0
    };
    if never_tunnel(&ip.dst, ip.next_header, icmp_type) {
        return pass(Counter::PassNotTunnelled, len);
    }
    let Some(b) = lookup_binding(&ip.dst) else {
        return pass(Counter::PassNoBinding, len);
    };
    if b.flags & BINDING_F_IPSEC_PAYLOAD != 0 {
        return pass(Counter::PassIpsecBinding, len);
    }
    if ip.hop_limit <= 1 {
        return pass(Counter::PassHopLimit, len);
    }
    encap(ctx, ip, &b, len)
}

/// Neighbor Discovery on a home link (home agent role). Two jobs, neither of which costs the
/// kernel a per-binding entry:
///
/// - Duplicate Address Detection for new bindings: an advertisement for an address the daemon
///   is probing, or another node's probe for it — with hop limit 255, so from the link —
///   marks the probe in `HA_DAD` (RFC 4862 §5.4.3, §5.4.4). The daemon reads the mark when the probe ends.
/// - Defending bound home addresses (RFC 6275 §10.4.1): a valid solicitation for a HoA bound
///   on this link gets a Neighbor Advertisement with this interface's MAC, sent back out
///   (XDP_TX) — to all nodes for a DAD probe, so a mobile node coming home hears that its
///   address is still held. Everything else is the kernel's.
///
/// A function of its own in the object (a BPF-to-BPF call): its stack frame does not add to
/// the other paths' within the 512-byte limit.
#[inline(never)]
fn neighbour_discovery(ctx: &XdpContext) -> u32 {
    let f = Pkt(ctx);
    let len = f.len();
    count(Counter::RxFrames, len);
    count(Counter::RxIpv6, len);
    let Ok(ip) = parse_ipv6(&f, L3) else {
        return pass(Counter::PassMalformed, len);
    };
    let Ok([icmp_type]) = load::<1>(ctx, INNER) else {
        return pass(Counter::PassMalformed, len);
    };
    let icmp_len = ip.payload_len as usize;
    if icmp_len < ND_MIN_LEN {
        return pass(Counter::PassNdInvalid, len);
    }
    // Copy at most NS_MAX_LEN bytes of the message to the stack (zero after them), with a
    // length the verifier can bound: `n - 1` checked by one unsigned comparison, then + 1
    // (see `punt_for_fragmentation`).
    let mut msg = [0u8; NS_MAX_LEN];
    let m = core::hint::black_box(if icmp_len > NS_MAX_LEN {
        NS_MAX_LEN
    } else {
        icmp_len
    })
    .wrapping_sub(1);
    if m >= NS_MAX_LEN {
        return pass(Counter::PassNdInvalid, len);
    }
    let n = core::hint::black_box(m) + 1;
    // SAFETY: n ≤ NS_MAX_LEN = size of `msg`; the helper checks the frame bounds.
    if unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            INNER as u32,
            msg.as_mut_ptr() as *mut c_void,
            n as u32,
        )
    } != 0
    {
        return pass(Counter::PassMalformed, len);
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&msg[8..24]);
    // Only from the link itself (RFC 4861 §7.1: hop limit 255): an off-link sender that knows
    // a registration is under way cannot fail its DAD.
    let unspecified_src = ip.src == [0u8; 16];
    if (icmp_type == ICMPV6_NA || unspecified_src)
        && ip.hop_limit == ND_HOP_LIMIT
        && let Some(probe) = HA_DAD.get_ptr_mut(target)
    {
        // SAFETY: a map value of this program's map, valid for the run; a plain store.
        unsafe { *probe = DAD_CONFLICT };
        count(Counter::DadConflictSeen, len);
    }
    if icmp_type != ICMPV6_NS {
        return pass(Counter::PassNotTunnelled, len);
    }
    let Some(b) = lookup_hoa(&target) else {
        return pass(Counter::PassNotTunnelled, len);
    };
    let ifindex = ingress_ifindex(ctx);
    if b.home_ifindex != ifindex {
        return pass(Counter::PassNotTunnelled, len);
    }
    if icmp_len > NS_MAX_LEN {
        return pass(Counter::PassNdInvalid, len);
    }
    let Ok(ns) = check_ns_fields(&msg, icmp_len, ip.hop_limit, &ip.src, &ip.dst) else {
        return pass(Counter::PassNdInvalid, len);
    };
    // The checksum over the pseudo-header (the addresses, contiguous in the IPv6 header) and
    // the message, which `msg` holds zero-padded to NS_MAX_LEN (zeros add nothing).
    let Some(addrs) = Pkt(ctx).ptr_at::<[u8; 32]>(L3 + 8) else {
        return pass(Counter::PassMalformed, len);
    };
    // SAFETY: `addrs` is a bounds-checked 32-byte packet range, `msg` a 64-byte stack buffer.
    let sum = unsafe {
        icmp::checksum(
            addrs as *const u8,
            msg.as_ptr(),
            NS_MAX_LEN as u32,
            icmp_len,
        )
    };
    if sum != Ok(0) {
        return pass(Counter::PassNdInvalid, len);
    }
    // SAFETY: the value is copied out at once.
    let Some(iface) = (unsafe { HA_IFACES.get(ifindex) }).copied() else {
        return pass(Counter::PassNotTunnelled, len);
    };
    let Ok(solicitor_mac) = load::<6>(ctx, 6) else {
        return pass(Counter::PassMalformed, len);
    };
    let (dst, dst_mac, flags) = proxy_reply(&ns, &ip.src, &solicitor_mac);
    // SAFETY: helper call on our own context; every pointer is re-derived afterwards.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, NA_FRAME_LEN as i32 - len as i32) } != 0 {
        return drop(Counter::DropHelperFailed, len);
    }
    // Written straight into the frame, which now holds exactly NA_FRAME_LEN bytes.
    let Some(f) = Pkt(ctx).ptr_at_mut::<[u8; NA_FRAME_LEN]>(0) else {
        return drop(Counter::DropHelperFailed, len);
    };
    // SAFETY: `ptr_at_mut` checked that the frame holds NA_FRAME_LEN bytes at `f`.
    write_na_fields(
        unsafe { &mut *f },
        &dst_mac,
        &iface.mac,
        &b.local,
        &dst,
        &target,
        flags,
    );
    // SAFETY: both ranges lie inside the NA_FRAME_LEN bytes checked at `f`.
    let sum = unsafe {
        let base = f as *const u8;
        icmp::checksum(base.add(L3 + 8), base.add(INNER), NA_LEN as u32, NA_LEN)
    };
    let Ok(sum) = sum else {
        return drop(Counter::DropHelperFailed, len);
    };
    if store(ctx, NA_CHECKSUM, &sum.to_be_bytes()).is_err() {
        return drop(Counter::DropHelperFailed, len);
    }
    count(
        if ns.dad {
            Counter::NdProxyDadAnswered
        } else {
            Counter::NdProxyAnswered
        },
        len,
    );
    XDP_TX
}

/// Encapsulates the frame's IPv6 packet towards the binding's care-of address.
#[inline(always)]
fn encap(ctx: &XdpContext, ip: &Ipv6, b: &BindingEntry, len: usize) -> u32 {
    let inner_len = ip.total_len();
    let nh = match resolve(
        raw(ctx),
        ingress_ifindex(ctx),
        &b.local,
        &b.remote,
        inner_len + IPV6_HLEN,
        0,
    ) {
        Route::Forward(nh) => nh,
        Route::TooBig(path_mtu) => return too_big(ctx, ip, b, path_mtu, len),
        Route::NoNeigh(_) => return pass(Counter::PassNoNeigh, len),
        Route::Pass(c) => return pass(c, len),
        Route::Drop(c) => return drop(c, len),
    };
    let Some(out) = egress(ctx, nh.ifindex) else {
        return pass(Counter::PassEgressNotManaged, len);
    };
    if bench_restore() {
        bench_save(ctx);
    }
    if push_outer(ctx, ip, b, &nh).is_err() {
        return drop(Counter::DropHelperFailed, len);
    }
    count_binding(b.binding_id, false, inner_len);
    if bench_restore()
        && (adjust_head(ctx, IPV6_HLEN as i32).is_err() || bench_restore_frame(ctx).is_err())
    {
        return drop(Counter::DropHelperFailed, len);
    }
    transmit(out, Counter::EncapTx, Counter::EncapRedirect, len)
}

/// Decrements the inner hop limit and puts Ethernet + outer IPv6 headers in front.
#[inline(always)]
fn push_outer(ctx: &XdpContext, ip: &Ipv6, b: &BindingEntry, nh: &NextHop) -> Result<(), ()> {
    store(ctx, L3 + 7, &[ip.hop_limit - 1])?;
    adjust_head(ctx, -(IPV6_HLEN as i32))?;
    let h = Pkt(ctx).ptr_at_mut::<[u8; INNER]>(0).ok_or(())?;
    // SAFETY: `ptr_at_mut` checked that the frame holds INNER bytes at `h`.
    write_tunnel_headers(
        unsafe { &mut *h },
        &nh.dmac,
        &nh.smac,
        ip.first_word,
        ip.total_len() as u16,
        outer_hop_limit(),
        &b.local,
        &b.remote,
    );
    Ok(())
}

/// Benchmarks only: saves the frame's first [`INNER`] bytes — Ethernet, IPv6 and what follows —
/// so [`bench_restore_frame`] can undo the program's change. Kept in a per-CPU map, not on the
/// stack (the verifier's 512 bytes are for the real paths).
#[inline(always)]
fn bench_save(ctx: &XdpContext) {
    if let Some(p) = HA_SCRATCH.get_ptr_mut(0) {
        // SAFETY: `p` is this CPU's INNER-byte slot; the helper checks the frame bounds.
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, p as *mut c_void, INNER as u32) };
    }
}

/// Benchmarks only: writes back what [`bench_save`] saved, over a frame of the same length.
#[inline(always)]
fn bench_restore_frame(ctx: &XdpContext) -> Result<(), ()> {
    let p = HA_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: as in `bench_save`.
    match unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, p as *mut c_void, INNER as u32) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

/// The inner packet does not fit the tunnel (RFC 2473 §7.1).
#[inline(always)]
fn too_big(ctx: &XdpContext, ip: &Ipv6, b: &BindingEntry, path_mtu: u32, len: usize) -> u32 {
    if ip.total_len() <= PUNT_MAX_PACKET {
        return punt_for_fragmentation(ctx, ip, b, len);
    }
    if !icmp_error_allowed() {
        return drop(Counter::DropPtbRateLimited, len);
    }
    match packet_too_big(ctx, ip, &b.local, tunnel_mtu(path_mtu)) {
        Ok(()) => {
            count(Counter::PtbSent, len);
            XDP_TX
        }
        Err(()) => drop(Counter::DropHelperFailed, len),
    }
}

/// Turns the frame into an ICMPv6 Packet Too Big for its source, from `from`, quoting the
/// first [`PTB_QUOTE_LEN`] bytes, and sends it back to the L2 neighbour it came from.
#[inline(always)]
fn packet_too_big(ctx: &XdpContext, ip: &Ipv6, from: &[u8; 16], mtu: u32) -> Result<(), ()> {
    let eth = load::<12>(ctx, 0)?;
    let frame_len = Pkt(ctx).len();
    let keep = ETH_HLEN + PTB_QUOTE_LEN;
    // ip.total_len() > 1280 > keep - ETH_HLEN, so this shrinks.
    // SAFETY: helper call on our own context; pointers are re-derived afterwards.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, keep as i32 - frame_len as i32) } != 0 {
        return Err(());
    }
    adjust_head(ctx, -(IPV6_HLEN as i32 + 8))?;
    let mut dmac = [0u8; 6];
    let mut smac = [0u8; 6];
    dmac.copy_from_slice(&eth[6..12]);
    smac.copy_from_slice(&eth[..6]);
    store(ctx, 0, &eth_header(&dmac, &smac))?;
    store(ctx, L3, &icmp_error_ipv6(from, &ip.src, 64))?;
    let hdr = ptb_header(mtu);
    store(ctx, INNER, &hdr)?;

    let q = Pkt(ctx)
        .ptr_at::<[u8; PTB_QUOTE_LEN]>(INNER + 8)
        .ok_or(())? as *const u8;
    // SAFETY: `ptr_at` bounds-checked the quote.
    let c = unsafe { icmp::ptb_checksum(from, &ip.src, &hdr, q)? };
    store(ctx, INNER + 2, &c)
}

/// Hands an inner packet of at most 1280 bytes whose tunnel packet must be fragmented to the
/// daemon, which sends it through a raw socket so the kernel fragments the outer packet
/// (RFC 2473 §7.1). XDP cannot fragment.
#[inline(always)]
fn punt_for_fragmentation(ctx: &XdpContext, ip: &Ipv6, b: &BindingEntry, len: usize) -> u32 {
    // The verifier must see the length it passes to bpf_xdp_load_bytes within [1, 1280].
    // Bound `n - 1` with one unsigned comparison on that very register (LLVM turns
    // `n == 0 || n > 1280` into exactly this, but on a copy the older verifiers lose), then
    // add 1. black_box: LLVM knows n ≥ 40 and would fold the check away.
    let m = core::hint::black_box(ip.total_len()).wrapping_sub(1);
    if m >= PUNT_MAX_PACKET {
        return drop(Counter::DropHelperFailed, len);
    }
    // black_box again, or LLVM folds `m + 1` back into the unchecked value.
    let n = core::hint::black_box(m) + 1;
    let Some(mut entry) = HA_PUNT.reserve::<PuntRecord>(0) else {
        return drop(Counter::DropPuntFull, len);
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points to a reserved ring buffer record of the right size; the copy is
    // bounded by n ≤ PUNT_MAX_PACKET, the size of `packet`.
    let copied = unsafe {
        (*rec).reason = PUNT_REASON_FRAGMENT;
        (*rec).len = n as u32;
        (*rec).binding = *b;
        bpf_xdp_load_bytes(
            ctx.ctx,
            L3 as u32,
            (*rec).packet.as_mut_ptr() as *mut c_void,
            n as u32,
        )
    };
    if copied != 0 {
        entry.discard(0);
        return drop(Counter::DropHelperFailed, len);
    }
    // SAFETY: n ≥ 40 (a parsed IPv6 header), so byte 7 (hop limit) is inside the copy.
    unsafe { (*rec).packet[7] = ip.hop_limit - 1 };
    entry.submit(0);
    count(Counter::PuntFragment, len);
    XDP_DROP
}

/// Mobility signalling (or ESP carrying it) with a Home Address option: swap the addresses as
/// the kernel's mip6 code does, so a kernel without `CONFIG_IPV6_MIP6` accepts it (see
/// `ha_ebpf::hao`).
#[inline(always)]
fn signalling(ctx: &XdpContext, ip: &Ipv6, len: usize) -> u32 {
    let Ok([next, ext_len]) = load::<2>(ctx, INNER) else {
        return pass(Counter::PassMalformed, len);
    };
    // MH or ESP (signalling, perhaps protected): the Home Address option is swapped whether a
    // binding exists or not (a first BU has none). Anything else with one is accepted only
    // with a binding from that CoA (RFC 6275 §9.3.1).
    let signalling = next == IPPROTO_MH || next == IPPROTO_ESP;
    // Opaque to LLVM, so the bound below is checked on this very value: otherwise LLVM tests
    // the loaded bytes as one u16 and derives the length from a copy the verifier never sees
    // bounded (the helper's size then looks like 2048).
    let hlen = core::hint::black_box(header_len(ext_len));
    if hlen > MAX_DSTOPTS_LEN || INNER + hlen > Pkt(ctx).len() {
        return pass(Counter::PassMalformed, len);
    }
    // The header goes to this CPU's scratch slot, not the stack (64 of its 512 bytes).
    let Some(slot) = HA_SCRATCH.get_ptr_mut(0) else {
        return pass(Counter::PassMalformed, len);
    };
    // SAFETY: hlen ≤ MAX_DSTOPTS_LEN = size of the slot, and the frame holds INNER + hlen
    // bytes; the slot is this CPU's for the run.
    let opts = unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, INNER as u32, slot as *mut c_void, hlen as u32) != 0 {
            return pass(Counter::PassMalformed, len);
        }
        &*slot
    };
    match scan_dstopts(opts, hlen) {
        DstOpts::Forged => drop(Counter::DropForgedHaoMarker, len),
        DstOpts::HomeAddress(pos) if pos + 18 <= MAX_DSTOPTS_LEN => {
            // Copied out of the packet by the helper: its offset is a runtime scalar, which
            // the verifier accepts where a variable stack or packet index is not provable.
            let mut hoa = [0u8; 16];
            // SAFETY: `hoa` is 16 bytes; the helper checks the offset against the frame.
            if unsafe {
                bpf_xdp_load_bytes(
                    ctx.ctx,
                    (INNER + pos + 2) as u32,
                    hoa.as_mut_ptr() as *mut c_void,
                    16,
                )
            } != 0
            {
                return pass(Counter::PassMalformed, len);
            }
            if !signalling {
                match lookup_binding(&hoa) {
                    Some(b) if b.remote == ip.src => {}
                    _ => return hao_without_binding(ip, &hoa, len),
                }
            }
            // Option: type := HAO_SWAPPED, data := the CoA; IPv6 source := the HoA.
            let mut swapped = [0u8; 18];
            swapped[0] = HAO_SWAPPED;
            swapped[1] = 16;
            swapped[2..].copy_from_slice(&ip.src);
            // SAFETY: both writes are inside the frame (checked above: INNER + hlen, and the
            // fixed header), and the buffers are as long as the lengths given.
            let ok = unsafe {
                bpf_xdp_store_bytes(
                    ctx.ctx,
                    (INNER + pos) as u32,
                    swapped.as_mut_ptr() as *mut c_void,
                    swapped.len() as u32,
                ) == 0
            } && store(ctx, L3 + 8, &hoa).is_ok();
            if !ok {
                drop(Counter::DropHelperFailed, len)
            } else if signalling {
                pass(Counter::SignalHaoRewritten, len)
            } else {
                pass(Counter::HaoAccepted, len)
            }
        }
        _ => pass(Counter::PassLocal, len),
    }
}

/// A packet with a Home Address option and no binding from its source for that home address
/// (RFC 6275 §9.3.1): dropped, and the daemon told through the punt ring so it can send a
/// Binding Error with status 1 (rate-limited there, §9.3.3). The record carries the IPv6
/// header and the option's address.
#[inline(always)]
fn hao_without_binding(ip: &Ipv6, hoa: &[u8; 16], len: usize) -> u32 {
    if let Some(mut entry) = HA_PUNT.reserve::<PuntRecord>(0) {
        let rec = entry.as_mut_ptr();
        // SAFETY: `rec` points to a reserved record of the right size; the writes stay inside
        // its `packet` (56 of PUNT_MAX_PACKET bytes).
        unsafe {
            (*rec).reason = PUNT_REASON_HAO_NO_BINDING;
            (*rec).len = PUNT_HAO_LEN as u32;
            let p = (&raw mut (*rec).packet).cast::<u8>();
            core::ptr::write_unaligned(p.add(8).cast::<[u8; 16]>(), ip.src);
            core::ptr::write_unaligned(p.add(24).cast::<[u8; 16]>(), ip.dst);
            core::ptr::write_unaligned(p.add(40).cast::<[u8; 16]>(), *hoa);
        }
        entry.submit(0);
    }
    drop(Counter::DropHaoNoBinding, len)
}

/// Mobile node: a packet to our CoA with a type 2 routing header carrying our HoA (the HA's
/// BA, RFC 6275 §6.4), possibly with ESP after it. A kernel without `CONFIG_IPV6_MIP6` rejects
/// routing type 2 while segments are left, and one with it drops a type 2 header it did not
/// process itself (needs xfrm `route2` states). So do what the kernel's mip6 code does and hand
/// on the result: remove the header and make the HoA the destination. ESP does not cover the
/// IPv6 header, and the MH checksum is over the HoA already (§6.1.1), so both stay valid.
#[inline(always)]
fn routing_header_2(ctx: &XdpContext, ip: &Ipv6, len: usize) -> u32 {
    let Ok(rh) = load::<24>(ctx, INNER) else {
        return pass(Counter::PassMalformed, len);
    };
    // Hdr Ext Len 2, Routing Type 2, Segments Left 1.
    if rh[1] != 2 || rh[2] != 2 || rh[3] != 1 {
        return pass(Counter::PassLocal, len);
    }
    let mut hoa = [0u8; 16];
    hoa.copy_from_slice(&rh[8..24]);
    if lookup_binding(&hoa).is_none() {
        return pass(Counter::PassLocal, len);
    }
    let Ok(mut head) = load::<{ ETH_HLEN + IPV6_HLEN }>(ctx, 0) else {
        return pass(Counter::PassMalformed, len);
    };
    let payload_len = ip.payload_len.saturating_sub(RH2_LEN as u16);
    head[L3 + 4..L3 + 6].copy_from_slice(&payload_len.to_be_bytes());
    head[L3 + 6] = rh[0];
    head[L3 + 24..L3 + 40].copy_from_slice(&hoa);
    // Ethernet + IPv6 header move up over the routing header, which the head then drops.
    if store(ctx, RH2_LEN, &head).is_err() || adjust_head(ctx, RH2_LEN as i32).is_err() {
        return drop(Counter::DropHelperFailed, len);
    }
    pass(Counter::MnRh2Rewritten, len)
}

/// Length of a type 2 routing header.
const RH2_LEN: usize = 24;

/// A tunnel packet for us: check it (RFC 6275 §10.4.5), then forward the inner packet.
#[inline(always)]
fn decap(ctx: &XdpContext, outer: &Ipv6, len: usize) -> u32 {
    let Ok(inner) = parse_ipv6(&Pkt(ctx), INNER) else {
        return pass(Counter::PassMalformed, len);
    };
    let mn = role() == ROLE_MOBILE_NODE;
    // HA: the inner source must be a bound HoA or inside a bound prefix, and the outer source
    // that binding's CoA. MN: the inner destination is our HoA, the outer source our HA.
    let key = if mn { &inner.dst } else { &inner.src };
    let Some(b) = lookup_binding(key) else {
        return drop(Counter::DropDecapUnknownSource, len);
    };
    if b.remote != outer.src {
        return drop(Counter::DropDecapWrongCareOf, len);
    }
    // Payload of this binding must come inside ESP (TunnelPayload): a plain IPv6-in-IPv6
    // packet would bypass the kernel's IPsec policy check.
    if b.flags & BINDING_F_IPSEC_PAYLOAD != 0 {
        return drop(Counter::DropDecapUnprotected, len);
    }
    let inner_len = inner.total_len();
    count_binding(b.binding_id, true, inner_len);
    if mn {
        return decap_and_pass(ctx, Counter::MnDecap, len);
    }
    if inner.hop_limit <= 1 {
        return decap_and_pass(ctx, Counter::DecapPass, len);
    }
    let icmp_type = if inner.next_header == IPPROTO_ICMPV6 {
        load::<1>(ctx, INNER + IPV6_HLEN).map(|[t]| t).unwrap_or(0)
    } else {
        0
    };
    if !never_tunnel(&inner.dst, inner.next_header, icmp_type)
        && let Some(b2) = lookup_binding(&inner.dst)
        && b2.flags & BINDING_F_IPSEC_PAYLOAD == 0
    {
        return reencap(ctx, &inner, &b2, len);
    }
    let nh = match resolve(
        raw(ctx),
        ingress_ifindex(ctx),
        &inner.src,
        &inner.dst,
        inner_len,
        0,
    ) {
        Route::Forward(nh) => nh,
        Route::Drop(c) => return drop(c, len),
        _ => return decap_and_pass(ctx, Counter::DecapPass, len),
    };
    let Some(out) = egress(ctx, nh.ifindex) else {
        return decap_and_pass(ctx, Counter::DecapPass, len);
    };
    if bench_restore() {
        bench_save(ctx);
    }
    if store(ctx, INNER + 7, &[inner.hop_limit - 1]).is_err()
        || store(ctx, IPV6_HLEN, &eth_header(&nh.dmac, &nh.smac)).is_err()
        || adjust_head(ctx, IPV6_HLEN as i32).is_err()
    {
        return drop(Counter::DropHelperFailed, len);
    }
    if bench_restore()
        && (adjust_head(ctx, -(IPV6_HLEN as i32)).is_err()
            || bench_restore_frame(ctx).is_err()
            || store(ctx, INNER + 7, &[inner.hop_limit]).is_err())
    {
        return drop(Counter::DropHelperFailed, len);
    }
    transmit(out, Counter::DecapForward, Counter::DecapForward, len)
}

/// Strips the outer header and gives the inner packet to the kernel as if it had arrived so.
#[inline(always)]
fn decap_and_pass(ctx: &XdpContext, c: Counter, len: usize) -> u32 {
    let Ok(eth) = load::<ETH_HLEN>(ctx, 0) else {
        return pass(Counter::PassMalformed, len);
    };
    if store(ctx, IPV6_HLEN, &eth).is_err() || adjust_head(ctx, IPV6_HLEN as i32).is_err() {
        return drop(Counter::DropHelperFailed, len);
    }
    pass(c, len)
}

/// A reverse-tunnelled packet for another bound HoA: rewrite the outer header towards that
/// binding's CoA instead of decapsulating and encapsulating again.
#[inline(always)]
fn reencap(ctx: &XdpContext, inner: &Ipv6, b: &BindingEntry, len: usize) -> u32 {
    let inner_len = inner.total_len();
    let nh = match resolve(
        raw(ctx),
        ingress_ifindex(ctx),
        &b.local,
        &b.remote,
        inner_len + IPV6_HLEN,
        0,
    ) {
        Route::Forward(nh) => nh,
        Route::Drop(c) => return drop(c, len),
        // Too big or unresolved: the kernel routes the inner packet (and its TC egress
        // program tunnels it, or it answers with an ICMPv6 error).
        _ => return decap_and_pass(ctx, Counter::DecapPass, len),
    };
    let Some(out) = egress(ctx, nh.ifindex) else {
        return decap_and_pass(ctx, Counter::DecapPass, len);
    };
    if bench_restore() {
        bench_save(ctx);
    }
    if store(ctx, INNER + 7, &[inner.hop_limit - 1]).is_err() {
        return drop(Counter::DropHelperFailed, len);
    }
    let Some(h) = Pkt(ctx).ptr_at_mut::<[u8; INNER]>(0) else {
        return drop(Counter::DropHelperFailed, len);
    };
    // SAFETY: `ptr_at_mut` checked that the frame holds INNER bytes at `h`.
    write_tunnel_headers(
        unsafe { &mut *h },
        &nh.dmac,
        &nh.smac,
        inner.first_word,
        inner_len as u16,
        outer_hop_limit(),
        &b.local,
        &b.remote,
    );
    count_binding(b.binding_id, false, inner_len);
    if bench_restore()
        && (bench_restore_frame(ctx).is_err() || store(ctx, INNER + 7, &[inner.hop_limit]).is_err())
    {
        return drop(Counter::DropHelperFailed, len);
    }
    transmit(out, Counter::DecapReencap, Counter::DecapReencap, len)
}
