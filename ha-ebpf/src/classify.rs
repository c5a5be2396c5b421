//! Which packets to a bound destination must never be tunnelled (RFC 6275 §10.4.1-§10.4.2).

use ha_common::nd::{ICMPV6_REDIRECT, ICMPV6_RS};

use crate::parse::{IPPROTO_HOPOPTS, IPPROTO_ICMPV6};

/// ICMPv6 types of Neighbor Discovery (RS 133, RA 134, NS 135, NA 136, Redirect 137).
#[inline(always)]
pub fn is_ndisc(icmp_type: u8) -> bool {
    (ICMPV6_RS..=ICMPV6_REDIRECT).contains(&icmp_type)
}

/// Multicast (ff00::/8).
#[inline(always)]
pub fn is_multicast(addr: &[u8; 16]) -> bool {
    addr[0] == 0xff
}

/// Link-local unicast (fe80::/10).
#[inline(always)]
pub fn is_link_local(addr: &[u8; 16]) -> bool {
    addr[0] == 0xfe && addr[1] & 0xc0 == 0x80
}

/// Whether a packet must stay with the kernel even when its destination is bound:
/// link-local or multicast destinations (the MN is not on this link), hop-by-hop options
/// (the kernel must see them), and Neighbor Discovery — also a unicast NS to a HoA, which
/// the home agent answers on the home link (`kern::xdp::neighbour_discovery`), never through
/// the tunnel.
///
/// A Mobility Header to a bound HoA is tunnelled like anything else: a correspondent's Home
/// Test, Binding Refresh Request or Binding Error reaches the mobile node only through its
/// home agent (RFC 6275 §5.2.5, §10.4.1 "all packets addressed to the HoA"; return
/// routability fails without it). Signalling for this node arrives addressed to one of its
/// own addresses and never gets here; what the node itself sends a HoA is the TC program's
/// decision (`kern::tc`).
/// `icmp_type` is only looked at when `next_header` is ICMPv6.
#[inline(always)]
pub fn never_tunnel(dst: &[u8; 16], next_header: u8, icmp_type: u8) -> bool {
    is_multicast(dst)
        || is_link_local(dst)
        || next_header == IPPROTO_HOPOPTS
        || (next_header == IPPROTO_ICMPV6 && is_ndisc(icmp_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{IPPROTO_TCP, IPPROTO_UDP};

    const HOA: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0xbe, 0xe5, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xfa, 0xce,
    ];

    #[test]
    fn ordinary_traffic_to_a_hoa_is_tunnelled() {
        assert!(!never_tunnel(&HOA, IPPROTO_TCP, 0));
        assert!(!never_tunnel(&HOA, IPPROTO_UDP, 0));
        // Echo request (128) is ordinary traffic.
        assert!(!never_tunnel(&HOA, IPPROTO_ICMPV6, 128));
    }

    #[test]
    fn mobility_headers_to_a_hoa_are_tunnelled_rfc6275_5_2_5() {
        // Home Test, Binding Refresh Request, Binding Error from a correspondent: the MH type
        // is not looked at.
        assert!(!never_tunnel(&HOA, crate::parse::IPPROTO_MH, 0));
    }

    #[test]
    fn neighbor_discovery_is_never_tunnelled() {
        for t in 133..=137 {
            assert!(never_tunnel(&HOA, IPPROTO_ICMPV6, t), "ICMPv6 type {t}");
        }
        // The type byte of a non-ICMP packet is not looked at.
        assert!(!never_tunnel(&HOA, IPPROTO_UDP, 135));
    }

    #[test]
    fn scopes_and_headers_that_stay_local() {
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0x80;
        assert!(never_tunnel(&ll, IPPROTO_UDP, 0));
        let mut mc = [0u8; 16];
        mc[0] = 0xff;
        mc[1] = 0x02;
        assert!(never_tunnel(&mc, IPPROTO_UDP, 0));
        assert!(never_tunnel(&HOA, IPPROTO_HOPOPTS, 0));
    }
}
