//! Reference programs, used to measure the data plane against and to make labs work:
//!
//! - `ha_xdp_pass`: returns XDP_PASS. The floor of any XDP program's cost; and attached to the
//!   far end of a veth, it gives that end the NAPI context veth needs to deliver frames
//!   another program sends with XDP_TX (without it, such frames wait for unrelated traffic).
//! - `ha_xdp_router`: a minimal IPv6 router (parse, `bpf_fib_lookup`, MAC rewrite, hop limit,
//!   TX or redirect) — what the tunnel fast path is benchmarked against.

use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    programs::XdpContext,
};
use ha_common::stats::Counter;
use ha_ebpf::{
    frame::Frame,
    headers::eth_header,
    parse::{ETH_HLEN, ETH_P_IPV6, parse_ipv6, parse_l2},
};

use super::{
    maps::{HA_DEVMAP, bench_restore, count},
    nexthop::{Route, resolve},
    xdp::{Pkt, ingress_ifindex, load, raw, store},
};

pub fn router(ctx: &XdpContext) -> u32 {
    let f = Pkt(ctx);
    let len = f.len();
    let Ok(l2) = parse_l2(&f) else {
        return XDP_PASS;
    };
    if l2.ethertype != ETH_P_IPV6 || l2.l3_offset != ETH_HLEN {
        return XDP_PASS;
    }
    let Ok(ip) = parse_ipv6(&f, ETH_HLEN) else {
        return XDP_PASS;
    };
    if ip.hop_limit <= 1 {
        return XDP_PASS;
    }
    let nh = match resolve(
        raw(ctx),
        ingress_ifindex(ctx),
        &ip.src,
        &ip.dst,
        ip.total_len(),
        0,
    ) {
        Route::Forward(nh) => nh,
        _ => return XDP_PASS,
    };
    let Ok(saved) = load::<ETH_HLEN>(ctx, 0) else {
        return XDP_PASS;
    };
    if store(ctx, 0, &eth_header(&nh.dmac, &nh.smac)).is_err()
        || store(ctx, ETH_HLEN + 7, &[ip.hop_limit - 1]).is_err()
    {
        return XDP_PASS;
    }
    if bench_restore()
        && (store(ctx, 0, &saved).is_err() || store(ctx, ETH_HLEN + 7, &[ip.hop_limit]).is_err())
    {
        return XDP_PASS;
    }
    count(Counter::DecapForward, len);
    if nh.ifindex == ingress_ifindex(ctx) {
        XDP_TX
    } else {
        HA_DEVMAP
            .redirect(nh.ifindex, XDP_PASS as u64)
            .unwrap_or_else(|a| a)
    }
}
