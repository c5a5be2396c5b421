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
    helpers::{bpf_redirect, bpf_redirect_neigh, bpf_skb_change_tail, bpf_skb_load_bytes},
    programs::TcContext,
};
use ha_common::{
    abi::{
        BINDING_F_IPSEC_PAYLOAD, BindingEntry, PUNT_MAX_PACKET, PUNT_REASON_FRAGMENT, PuntRecord,
        ROLE_MOBILE_NODE, SIGNALLING_MARK,
    },
    mh,
    nd::{
        ICMPV6_NS, NA_CHECKSUM, NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, NA_FRAME_LEN, NA_LEN,
        write_na_fields,
    },
    stats::Counter,
};
use ha_ebpf::{
    classify::never_tunnel,
    headers::{PTB_QUOTE_LEN, eth_header, icmp_error_ipv6, outer_ipv6, ptb_header, tunnel_mtu},
    parse::{
        ETH_HLEN, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_ICMPV6, IPPROTO_MH, IPPROTO_ROUTING,
        IPV6_HLEN, Ipv6,
    },
};

use super::{
    icmp,
    maps::{
        HA_ND_SEEN, HA_PUNT, HA_SIGNAL_COA, count, count_binding, icmp_error_allowed, is_local,
        lookup_binding, lookup_hoa, outer_hop_limit, role,
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
    // The home agent's own unmarked signalling to a HoA (a BA to a mobile node at home, which
    // sent its BU from the home link) goes on the home link. Any other Mobility Header to a
    // bound HoA — a correspondent's, forwarded by the kernel — is tunnelled; so is the mobile
    // node's Home Test Init from its HoA (reverse tunnelling, RFC 6275 §5.2.5).
    if ip.next_header == IPPROTO_MH && is_local(&ip.src) {
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
    let via = match next_hop(ctx, ifindex, &b, tot_len, len) {
        Hop::Go(via) => via,
        Hop::TooBig(path_mtu) => return too_big(ctx, &ip, &b, path_mtu),
        Hop::Drop => return TC_SHOT,
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
        via,
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
    let base = frame.as_ptr();
    // SAFETY: both ranges lie inside `frame`.
    let Ok(c) = (unsafe {
        icmp::checksum(
            base.add(ETH_HLEN + 8),
            base.add(ETH_HLEN + IPV6_HLEN),
            NA_LEN as u32,
            NA_LEN,
        )
    }) else {
        return TC_OK;
    };
    let c = c.to_be_bytes();
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

/// Where a packet leaves: out of `egress`, with the Ethernet addresses of its next hop when
/// `resolved`, else through the neighbour subsystem. Every byte initialised (an `Option` with
/// an undefined payload made LLVM spill an unset register, which the verifier refuses).
#[derive(Clone, Copy)]
struct Via {
    egress: u32,
    resolved: bool,
    /// Destination, then source MAC.
    macs: [u8; 12],
}

impl Via {
    #[inline(always)]
    fn resolved(egress: u32, dmac: &[u8; 6], smac: &[u8; 6]) -> Self {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(dmac);
        macs[6..].copy_from_slice(smac);
        Self {
            egress,
            resolved: true,
            macs,
        }
    }

    #[inline(always)]
    fn unresolved(egress: u32) -> Self {
        Self {
            egress,
            resolved: false,
            macs: [0; 12],
        }
    }
}

/// Where a tunnel packet leaves.
enum Hop {
    Go(Via),
    /// It does not fit the path, whose MTU this is.
    TooBig(u32),
    /// Dropped (counted).
    Drop,
}

/// Where a packet from `b.local` to `b.remote` leaves. `tot_len` 0 skips the MTU check.
#[inline(always)]
fn next_hop(ctx: &TcContext, ifindex: u32, b: &BindingEntry, tot_len: usize, len: usize) -> Hop {
    match resolve(
        ctx.skb.skb as *mut c_void,
        ifindex,
        &b.local,
        &b.remote,
        tot_len,
        FIB_OUTPUT,
    ) {
        Route::Forward(nh) => Hop::Go(Via::resolved(nh.ifindex, &nh.dmac, &nh.smac)),
        // Unresolved neighbour: let the kernel resolve it on the egress interface (often not
        // this one).
        Route::NoNeigh(egress) => Hop::Go(Via::unresolved(egress)),
        // A host that does not forward (a mobile node: the FIB helper refuses lookups on
        // interfaces with forwarding off): let the kernel route the packet out of this
        // interface and resolve its next hop.
        Route::Pass(Counter::PassFibOther) => Hop::Go(Via::unresolved(ifindex)),
        Route::Pass(reason) | Route::Drop(reason) => {
            // Count the FIB's reason too, so `hagent stats` says why.
            count(reason, len);
            count(Counter::TcDrop, len);
            Hop::Drop
        }
        Route::TooBig(mtu) => Hop::TooBig(mtu),
    }
}

/// A packet the node sends (or forwards) to a bound HoA does not fit the tunnel (RFC 2473
/// §7.1). No route MTU per binding sizes such packets in advance; instead, as a tunnel entry
/// point must: an inner packet of at most 1280 bytes is handed to the daemon, which sends it
/// so the kernel fragments the outer packet (as XDP does); a larger one becomes an ICMPv6
/// Packet Too Big to its sender — put into this interface's input, so the local stack learns
/// the path MTU to the HoA (or forwards the error to a remote sender) — rate-limited like the
/// XDP program's.
#[inline(always)]
fn too_big(ctx: &TcContext, ip: &Ipv6, b: &BindingEntry, path_mtu: u32) -> i32 {
    let len = ctx.len() as usize;
    // SAFETY: ctx.skb.skb is the kernel's __sk_buff for this run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let inner_len = len.saturating_sub(ETH_HLEN);
    if inner_len <= PUNT_MAX_PACKET {
        return punt(ctx, b, inner_len, len);
    }
    if !icmp_error_allowed() {
        count(Counter::DropPtbRateLimited, len);
        return TC_SHOT;
    }
    match packet_too_big(ctx, ip, &b.local, tunnel_mtu(path_mtu)) {
        Ok(()) => {
            count(Counter::TcPtbSent, len);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(ifindex, BPF_F_INGRESS) as i32 }
        }
        Err(()) => {
            count(Counter::TcDrop, len);
            TC_SHOT
        }
    }
}

/// Turns the packet into an ICMPv6 Packet Too Big from `from` to its sender, quoting its
/// first [`PTB_QUOTE_LEN`] bytes (RFC 4443 §3.2), addressed to this node's own MAC.
#[inline(always)]
fn packet_too_big(ctx: &TcContext, ip: &Ipv6, from: &[u8; 16], mtu: u32) -> Result<(), ()> {
    let our_mac = ctx.load::<[u8; 6]>(6).map_err(|_| ())?;
    const NEW: usize = ETH_HLEN + IPV6_HLEN + 8;
    // SAFETY: plain helper calls on our own skb; no old packet pointer is used after them.
    unsafe {
        if bpf_skb_change_tail(ctx.skb.skb, (ETH_HLEN + PTB_QUOTE_LEN) as u32, 0) != 0 {
            return Err(());
        }
    }
    ctx.adjust_room((IPV6_HLEN + 8) as i32, BPF_ADJ_ROOM_MAC, 0)
        .map_err(|_| ())?;
    ctx.store(0, &eth_header(&our_mac, &our_mac), 0)
        .map_err(|_| ())?;
    ctx.store(ETH_HLEN, &icmp_error_ipv6(from, &ip.src, 64), 0)
        .map_err(|_| ())?;
    let hdr = ptb_header(mtu);
    ctx.store(ETH_HLEN + IPV6_HLEN, &hdr, 0).map_err(|_| ())?;
    // The quote's sum, from the now linear packet in 512-byte pieces (bpf_csum_diff's most).
    ctx.pull_data((NEW + PTB_QUOTE_LEN) as u32)
        .map_err(|_| ())?;
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + NEW + PTB_QUOTE_LEN > end {
        return Err(());
    }
    // SAFETY: `start + NEW .. + PTB_QUOTE_LEN` was bounds-checked above.
    let c = unsafe { icmp::ptb_checksum(from, &ip.src, &hdr, (start + NEW) as *const u8)? };
    ctx.store(ETH_HLEN + IPV6_HLEN + 2, &c, 0).map_err(|_| ())
}

/// Hands an inner packet of at most 1280 bytes to the daemon, which sends it through the
/// kernel so the outer packet is fragmented (RFC 2473 §7.1); see the XDP program's twin.
#[inline(always)]
fn punt(ctx: &TcContext, b: &BindingEntry, inner_len: usize, len: usize) -> i32 {
    // Bound n - 1 with one unsigned comparison, then + 1 (see the XDP program).
    let m = core::hint::black_box(inner_len).wrapping_sub(1);
    if m >= PUNT_MAX_PACKET {
        count(Counter::TcDrop, len);
        return TC_SHOT;
    }
    let n = core::hint::black_box(m) + 1;
    let Some(mut entry) = HA_PUNT.reserve::<PuntRecord>(0) else {
        count(Counter::DropPuntFull, len);
        return TC_SHOT;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points to a reserved record of the right size; the copy is bounded by
    // n ≤ PUNT_MAX_PACKET, the size of `packet`.
    let copied = unsafe {
        (*rec).reason = PUNT_REASON_FRAGMENT;
        (*rec).len = n as u32;
        (*rec).binding = *b;
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            ETH_HLEN as u32,
            (*rec).packet.as_mut_ptr() as *mut c_void,
            n as u32,
        )
    };
    if copied != 0 {
        entry.discard(0);
        count(Counter::TcDrop, len);
        return TC_SHOT;
    }
    entry.submit(0);
    count(Counter::PuntFragment, len);
    TC_SHOT
}

/// Sends the rewritten packet on: with the MACs of a resolved next hop (redirecting when it is
/// another interface), or through the neighbour subsystem when the next hop is unresolved.
#[inline(always)]
fn transmit(
    ctx: &TcContext,
    ifindex: u32,
    via: Via,
    resolved: Counter,
    via_neigh: Counter,
    len: usize,
) -> i32 {
    if via.resolved {
        if ctx.store(0, &via.macs, 0).is_err() {
            count(Counter::TcDrop, len);
            return TC_SHOT;
        }
        count(resolved, len);
        if via.egress == ifindex {
            TC_OK
        } else {
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(via.egress, 0) as i32 }
        }
    } else {
        // Let the neighbour subsystem resolve the next hop of the new destination, on the
        // interface the FIB chose.
        count(via_neigh, len);
        // SAFETY: plain helper call; a null params pointer makes the kernel look the next hop
        // up itself.
        unsafe { bpf_redirect_neigh(via.egress, core::ptr::null_mut(), 0, 0) as i32 }
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
    let signal_coa = if mn {
        None
    } else {
        // SAFETY: the value is copied out at once.
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
    let via = if mn {
        Via::unresolved(ifindex)
    } else {
        match next_hop(ctx, ifindex, &b, 0, len) {
            Hop::Go(via) => via,
            // No MTU question was asked (tot_len 0).
            Hop::TooBig(_) | Hop::Drop => return TC_SHOT,
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
        via,
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
