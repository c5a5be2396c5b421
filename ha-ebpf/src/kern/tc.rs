//! The TC egress program: tunnels what the node itself sends — or what the kernel forwards
//! after XDP passed it (unresolved neighbour, ...) — to a bound HoA (HA role), or from its
//! HoA (MN role). XDP only sees received frames; this is the path for everything else.
//!
//! The daemon routes each bound HoA out of the home-link interface (a permanent neighbour
//! entry, and a route whose MTU is the tunnel MTU so the stack sizes packets to fit), so such
//! packets reach this program.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    helpers::{bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use ha_common::{
    abi::{BINDING_F_IPSEC_PAYLOAD, ROLE_MOBILE_NODE},
    stats::Counter,
};
use ha_ebpf::{
    classify::never_tunnel,
    headers::outer_ipv6,
    parse::{ETH_HLEN, ETH_P_IPV6, IPPROTO_ICMPV6, IPV6_HLEN, Ipv6},
};

use super::{
    maps::{count, count_binding, lookup_binding, outer_hop_limit, role},
    nexthop::{FIB_OUTPUT, Route, resolve},
};

/// `TC_ACT_OK` and `TC_ACT_SHOT` (uapi/linux/pkt_cls.h) as the classifier's return type.
const TC_OK: i32 = 0;
const TC_SHOT: i32 = 2;

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
    let icmp_type = if ip.next_header == IPPROTO_ICMPV6 {
        ctx.load::<u8>(ETH_HLEN + IPV6_HLEN).unwrap_or(0)
    } else {
        0
    };
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
    let route = resolve(
        ctx.skb.skb as *mut c_void,
        ifindex,
        &b.local,
        &b.remote,
        tot_len,
        FIB_OUTPUT,
    );
    let (egress, macs) = match route {
        Route::Forward(nh) => (nh.ifindex, Some((nh.dmac, nh.smac))),
        // Unresolved neighbour, or a host that does not forward (a mobile node: the FIB
        // helper refuses lookups on interfaces with forwarding off): let the kernel route the
        // encapsulated packet out of this interface and resolve its next hop.
        Route::Pass(Counter::PassNoNeigh | Counter::PassFibOther) => (0, None),
        Route::Pass(reason) | Route::Drop(reason) => {
            // Count the FIB's reason too, so `hagent stats` says why.
            count(reason, len);
            count(Counter::TcDrop, len);
            return TC_SHOT;
        }
        Route::TooBig(_) => {
            count(Counter::TcDrop, len);
            return TC_SHOT;
        }
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
    match macs {
        Some((dmac, smac)) => {
            let mut eth = [0u8; 12];
            eth[..6].copy_from_slice(&dmac);
            eth[6..].copy_from_slice(&smac);
            if ctx.store(0, &eth, 0).is_err() {
                count(Counter::TcDrop, len);
                return TC_SHOT;
            }
            count(Counter::TcEncap, len);
            if egress == ifindex {
                TC_OK
            } else {
                // SAFETY: plain helper call.
                unsafe { bpf_redirect(egress, 0) as i32 }
            }
        }
        None => {
            // Let the neighbour subsystem resolve the next hop of the outer destination.
            count(Counter::TcEncapNeigh, len);
            // SAFETY: plain helper call; a null params pointer makes the kernel look the next
            // hop up itself.
            unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
    }
}
