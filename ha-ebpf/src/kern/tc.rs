//! The TC egress program: tunnels what the node itself sends — or what the kernel forwards
//! after XDP passed it (unresolved neighbour, ...) — to a bound HoA (HA role), or from its
//! HoA (MN role). XDP only sees received frames; this is the path for everything else.
//!
//! The daemon routes each bound HoA out of the home-link interface (a permanent neighbour
//! entry, and a route whose MTU is the tunnel MTU so the stack sizes packets to fit), so such
//! packets reach this program.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
        bpf_adj_room_mode::{BPF_ADJ_ROOM_MAC, BPF_ADJ_ROOM_NET},
    },
    helpers::{bpf_csum_diff, bpf_redirect, bpf_redirect_neigh, bpf_skb_change_tail},
    programs::TcContext,
};
use ha_common::{
    abi::{BINDING_F_IPSEC_PAYLOAD, BindingEntry, ROLE_MOBILE_NODE, SIGNALLING_MARK},
    mh,
    nd::{
        ICMPV6_NS, NA_CHECKSUM, NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, NA_FRAME_LEN, NA_LEN,
        write_na_fields,
    },
    stats::Counter,
};
use ha_ebpf::{
    classify::never_tunnel,
    csum,
    headers::outer_ipv6,
    parse::{
        ETH_HLEN, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPV6_HLEN, Ipv6,
    },
};

use super::{
    maps::{
        HA_ND_SEEN, HA_SIGNAL_COA, count, count_binding, lookup_binding, lookup_hoa,
        outer_hop_limit, role,
    },
    nexthop::{FIB_OUTPUT, Route, resolve},
};

/// `TC_ACT_OK` and `TC_ACT_SHOT` (uapi/linux/pkt_cls.h) as the classifier's return type.
const TC_OK: i32 = 0;
const TC_SHOT: i32 = 2;
/// `BPF_F_INGRESS`: `bpf_redirect` to the interface's input rather than its output.
const BPF_F_INGRESS: u64 = 1;

pub fn egress(ctx: &TcContext) -> i32 {
    let len = ctx.len() as usize;
    let Ok(ethertype) = ctx.load::<[u8; 2]>(12) else {
        return TC_OK;
    };
    if u16::from_be_bytes(ethertype) != ETH_P_IPV6 {
        return TC_OK;
    }
    let Ok(h) = ctx.load::<[u8; IPV6_HLEN]>(ETH_HLEN) else {
        return TC_OK;
    };
    let Ok(ip) = Ipv6::from_bytes(&h) else {
        return TC_OK;
    };
    // SAFETY: ctx.skb.skb is the kernel's __sk_buff for this run.
    if unsafe { (*ctx.skb.skb).mark } == SIGNALLING_MARK {
        return signalling(ctx, &ip, &h, len);
    }
    let icmp_type = if ip.next_header == IPPROTO_ICMPV6 {
        ctx.load::<u8>(ETH_HLEN + IPV6_HLEN).unwrap_or(0)
    } else {
        0
    };
    if icmp_type == ICMPV6_NS && ip.next_header == IPPROTO_ICMPV6 && role() != ROLE_MOBILE_NODE {
        return reflect_solicitation(ctx, &ip, len);
    }
    if never_tunnel(&ip.dst, ip.next_header, icmp_type) {
        return TC_OK;
    }
    // HA: packets to a bound HoA/MNP. MN: packets from its HoA.
    let key = if role() == ROLE_MOBILE_NODE {
        &ip.src
    } else {
        &ip.dst
    };
    let Some(b) = lookup_binding(key) else {
        return TC_OK;
    };
    if b.flags & BINDING_F_IPSEC_PAYLOAD != 0 {
        return TC_OK;
    }
    let inner_len = len.saturating_sub(ETH_HLEN);
    // SAFETY: ctx.skb.skb is the kernel's __sk_buff for this run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // A GSO packet is segmented after this program (each segment sized by the route MTU the
    // daemon set for the HoA), so its total length says nothing about the MTU: skip the
    // check (tot_len 0).
    // SAFETY: as above.
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let tot_len = if gso { 0 } else { inner_len + IPV6_HLEN };
    let Some((egress, macs)) = next_hop(ctx, ifindex, &b, tot_len, len) else {
        return TC_SHOT;
    };
    if ctx
        .adjust_room(
            IPV6_HLEN as i32,
            BPF_ADJ_ROOM_MAC,
            BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 as u64,
        )
        .is_err()
    {
        count(Counter::TcDrop, len);
        return TC_SHOT;
    }
    let outer = outer_ipv6(
        ip.first_word,
        inner_len as u16,
        outer_hop_limit(),
        &b.local,
        &b.remote,
    );
    if ctx.store(ETH_HLEN, &outer, 0).is_err() {
        count(Counter::TcDrop, len);
        return TC_SHOT;
    }
    count_binding(b.binding_id, role() == ROLE_MOBILE_NODE, inner_len);
    transmit(
        ctx,
        ifindex,
        egress,
        macs,
        Counter::TcEncap,
        Counter::TcEncapNeigh,
        len,
    )
}

/// The kernel's own Neighbor Solicitation for a HoA bound on this link (home agent role): the
/// kernel is about to send the HoA a packet — one it originates, or one it forwards after XDP
/// passed it — and resolves the HoA on the home link, where nobody answers for a mobile node
/// that is away. Answer it ourselves: the solicitation becomes an advertisement from the HoA
/// with this interface's MAC, handed to this interface's input (`bpf_redirect` ingress). The
/// kernel's neighbour entry then points at us, so its packets for the HoA come to this program
/// and are tunnelled. No entry per binding is installed in advance; the kernel makes the ones
/// it needs and ages them out, and `HA_ND_SEEN` tells the daemon which to delete when a
/// binding goes.
#[inline(always)]
fn reflect_solicitation(ctx: &TcContext, ip: &Ipv6, len: usize) -> i32 {
    // DAD for one of our own addresses, or anything else we did not make.
    if ip.src == [0u8; 16] {
        return TC_OK;
    }
    let Ok(target) = ctx.load::<[u8; 16]>(ETH_HLEN + IPV6_HLEN + 8) else {
        return TC_OK;
    };
    // SAFETY: ctx.skb.skb is the kernel's __sk_buff for this run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match lookup_hoa(&target) {
        Some(b) if b.home_ifindex == ifindex => {}
        _ => return TC_OK,
    }
    let Ok(our_mac) = ctx.load::<[u8; 6]>(6) else {
        return TC_OK;
    };
    let mut frame = [0u8; NA_FRAME_LEN];
    write_na_fields(
        &mut frame,
        &our_mac,
        &our_mac,
        &target,
        &ip.src,
        &target,
        NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
    );
    // Checksum with the helper (an unrolled sum does not fit the stack): the addresses,
    // contiguous in the IPv6 header, and the message.
    let base = frame.as_mut_ptr();
    // SAFETY: both ranges lie inside `frame`.
    let (a, m) = unsafe {
        (
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                base.add(ETH_HLEN + 8) as *mut u32,
                32,
                0,
            ),
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                base.add(ETH_HLEN + IPV6_HLEN) as *mut u32,
                NA_LEN as u32,
                0,
            ),
        )
    };
    if a < 0 || m < 0 {
        return TC_OK;
    }
    let sum = csum::from_native(a as u64 + m as u64) + NA_LEN as u64 + IPPROTO_ICMPV6 as u64;
    let c = csum::finish(sum).to_be_bytes();
    frame[NA_CHECKSUM] = c[0];
    frame[NA_CHECKSUM + 1] = c[1];
    // SAFETY: plain helper call on our own skb; nothing is read through old pointers after it.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, NA_FRAME_LEN as u32, 0) } != 0
        || ctx.store(0, &frame, 0).is_err()
    {
        count(Counter::TcDrop, len);
        return TC_SHOT;
    }
    let _ = HA_ND_SEEN.insert(target, 1, 0);
    count(Counter::TcNdReflected, len);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(ifindex, BPF_F_INGRESS) as i32 }
}

/// A next hop's (destination, source) MACs.
type Macs = ([u8; 6], [u8; 6]);

/// Where a packet from `b.local` to `b.remote` leaves, with the next hop's MACs when they are
/// known: `None` (counted) when it must be dropped. `tot_len` 0 skips the MTU check.
#[inline(always)]
fn next_hop(
    ctx: &TcContext,
    ifindex: u32,
    b: &BindingEntry,
    tot_len: usize,
    len: usize,
) -> Option<(u32, Option<Macs>)> {
    match resolve(
        ctx.skb.skb as *mut c_void,
        ifindex,
        &b.local,
        &b.remote,
        tot_len,
        FIB_OUTPUT,
    ) {
        Route::Forward(nh) => Some((nh.ifindex, Some((nh.dmac, nh.smac)))),
        // Unresolved neighbour: let the kernel resolve it on the egress interface (often not
        // this one).
        Route::NoNeigh(egress) => Some((egress, None)),
        // A host that does not forward (a mobile node: the FIB helper refuses lookups on
        // interfaces with forwarding off): let the kernel route the packet out of this
        // interface and resolve its next hop.
        Route::Pass(Counter::PassFibOther) => Some((ifindex, None)),
        Route::Pass(reason) | Route::Drop(reason) => {
            // Count the FIB's reason too, so `hagent stats` says why.
            count(reason, len);
            count(Counter::TcDrop, len);
            None
        }
        Route::TooBig(_) => {
            count(Counter::TcDrop, len);
            None
        }
    }
}

/// Sends the rewritten packet on: with the MACs of a resolved next hop (redirecting when it is
/// another interface), or through the neighbour subsystem when the next hop is unresolved.
#[inline(always)]
fn transmit(
    ctx: &TcContext,
    ifindex: u32,
    egress: u32,
    macs: Option<Macs>,
    resolved: Counter,
    via_neigh: Counter,
    len: usize,
) -> i32 {
    match macs {
        Some((dmac, smac)) => {
            let mut eth = [0u8; 12];
            eth[..6].copy_from_slice(&dmac);
            eth[6..].copy_from_slice(&smac);
            if ctx.store(0, &eth, 0).is_err() {
                count(Counter::TcDrop, len);
                return TC_SHOT;
            }
            count(resolved, len);
            if egress == ifindex {
                TC_OK
            } else {
                // SAFETY: plain helper call.
                unsafe { bpf_redirect(egress, 0) as i32 }
            }
        }
        None => {
            // Let the neighbour subsystem resolve the next hop of the new destination, on
            // the interface the FIB chose.
            count(via_neigh, len);
            // SAFETY: plain helper call; a null params pointer makes the kernel look the next
            // hop up itself.
            unsafe { bpf_redirect_neigh(egress, core::ptr::null_mut(), 0, 0) as i32 }
        }
    }
}

/// A marked Mobility Header packet (see [`SIGNALLING_MARK`]), after xfrm: the mobile node's BU
/// from its HoA gets a Home Address option and its CoA as source (RFC 6275 §6.3, §11.7.1);
/// the home agent's BA to a bound HoA gets a type 2 routing header and the CoA as destination
/// (§6.4, §10.3.1), and is routed towards the CoA. The header goes right after the IPv6
/// header, before ESP, as RFC 3776 §3 orders them.
#[inline(always)]
fn signalling(ctx: &TcContext, ip: &Ipv6, header: &[u8; IPV6_HLEN], len: usize) -> i32 {
    let mn = role() == ROLE_MOBILE_NODE;
    let hoa = if mn { &ip.src } else { &ip.dst };
    // Home agent: a BA whose CoA is not (or not yet) the binding's — a refusal — has its CoA
    // in HA_SIGNAL_COA, which the daemon writes right before sending it; it wins over the
    // binding (a status 135 to a new CoA must not go to the old one).
    // SAFETY: the value is copied out at once.
    let signal_coa = if mn {
        None
    } else {
        unsafe { HA_SIGNAL_COA.get(hoa) }.copied()
    };
    let b = match (signal_coa, lookup_binding(hoa)) {
        (Some(coa), _) => BindingEntry {
            local: ip.src,
            remote: coa,
            flags: 0,
            binding_id: u32::MAX,
            home_ifindex: 0,
            _pad: 0,
        },
        (None, Some(b)) => b,
        (None, None) => {
            count(Counter::TcSignalUnbound, len);
            return TC_OK;
        }
    };
    // SAFETY: ctx.skb.skb is the kernel's __sk_buff for this run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // The HA's BA changes destination: find the CoA's next hop before touching anything.
    let (egress, macs) = if mn {
        (ifindex, None)
    } else {
        match next_hop(ctx, ifindex, &b, 0, len) {
            Some(hop) => hop,
            None => return TC_SHOT,
        }
    };
    let Some(new_header) = signalling_headers(ip, header, &b, mn) else {
        count(Counter::TcDrop, len);
        return TC_SHOT;
    };
    if ctx
        // One room size for both headers (mh asserts HAO_DEST_OPTS_LEN == RH2_LEN).
        .adjust_room(mh::HAO_DEST_OPTS_LEN as i32, BPF_ADJ_ROOM_NET, 0)
        .is_err()
        || ctx.store(ETH_HLEN, &new_header, 0).is_err()
    {
        count(Counter::TcDrop, len);
        return TC_SHOT;
    }
    if mn {
        // Same destination (the HA), same next hop: only the source changed.
        count(Counter::TcSignalHao, len);
        return TC_OK;
    }
    transmit(
        ctx,
        ifindex,
        egress,
        macs,
        Counter::TcSignalRh2,
        Counter::TcSignalRh2,
        len,
    )
}

/// The IPv6 header and the extension header that follows it, for [`signalling`].
#[inline(always)]
fn signalling_headers(
    ip: &Ipv6,
    header: &[u8; IPV6_HLEN],
    b: &BindingEntry,
    mn: bool,
) -> Option<[u8; IPV6_HLEN + mh::HAO_DEST_OPTS_LEN]> {
    let mut out = [0u8; IPV6_HLEN + mh::HAO_DEST_OPTS_LEN];
    out[..IPV6_HLEN].copy_from_slice(header);
    let payload_len = ip.payload_len.checked_add(mh::HAO_DEST_OPTS_LEN as u16)?;
    out[4..6].copy_from_slice(&payload_len.to_be_bytes());
    let ext = &mut out[IPV6_HLEN..];
    if mn {
        mh::build_hao_dest_opts(ext, ip.next_header, &ip.src).ok()?;
        out[6] = IPPROTO_DSTOPTS;
        out[8..24].copy_from_slice(&b.local);
    } else {
        mh::build_rh2(ext, ip.next_header, &ip.dst).ok()?;
        out[6] = IPPROTO_ROUTING;
        out[24..40].copy_from_slice(&b.remote);
    }
    Some(out)
}
