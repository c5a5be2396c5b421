//! Header images the programs write: Ethernet, the RFC 2473 outer header and ICMPv6 Packet Too
//! Big.

use crate::parse::{ETH_HLEN, ETH_P_IPV6, IPPROTO_ICMPV6, IPPROTO_IPV6, IPV6_HLEN};

/// An Ethernet header for an IPv6 frame from `smac` to `dmac`.
#[inline(always)]
pub fn eth_header(dmac: &[u8; 6], smac: &[u8; 6]) -> [u8; ETH_HLEN] {
    let mut e = [0u8; ETH_HLEN];
    e[..6].copy_from_slice(dmac);
    e[6..12].copy_from_slice(smac);
    e[12..].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    e
}

/// The outer IPv6 header of an IPv6-in-IPv6 tunnel packet (RFC 2473 §3.1): traffic class and
/// flow label copied from the inner header (RFC 2473 §5.1, RFC 6438 permits reusing the inner
/// flow label), payload length = inner packet length, next header 41, no Tunnel Encapsulation
/// Limit option (as UMIP configures its tunnels).
#[inline(always)]
pub fn outer_ipv6(
    inner_first_word: [u8; 4],
    inner_len: u16,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> [u8; IPV6_HLEN] {
    let mut h = [0u8; IPV6_HLEN];
    h[0] = 0x60 | (inner_first_word[0] & 0x0f);
    h[1] = inner_first_word[1];
    h[2] = inner_first_word[2];
    h[3] = inner_first_word[3];
    let len = inner_len.to_be_bytes();
    h[4] = len[0];
    h[5] = len[1];
    h[6] = IPPROTO_IPV6;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(src);
    h[24..40].copy_from_slice(dst);
    h
}

/// Writes an Ethernet header (`dmac`, `smac`, IPv6) and [`outer_ipv6`] over the first 54
/// bytes of `h` — which may be packet memory, so the programs need no copy on their stack.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn write_tunnel_headers(
    h: &mut [u8; 14 + IPV6_HLEN],
    dmac: &[u8; 6],
    smac: &[u8; 6],
    inner_first_word: [u8; 4],
    inner_len: u16,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) {
    h[..6].copy_from_slice(dmac);
    h[6..12].copy_from_slice(smac);
    h[12] = 0x86;
    h[13] = 0xdd;
    h[14] = 0x60 | (inner_first_word[0] & 0x0f);
    h[15] = inner_first_word[1];
    h[16] = inner_first_word[2];
    h[17] = inner_first_word[3];
    let len = inner_len.to_be_bytes();
    h[18] = len[0];
    h[19] = len[1];
    h[20] = IPPROTO_IPV6;
    h[21] = hop_limit;
    h[22..38].copy_from_slice(src);
    h[38..54].copy_from_slice(dst);
}

/// ICMPv6 Packet Too Big type.
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// The IPv6 minimum link MTU.
pub const IPV6_MIN_MTU: u32 = 1280;
/// How much of the offending packet a Packet Too Big quotes: as much as fits in a minimum-MTU
/// packet (RFC 4443 §3.2) after the IPv6 and ICMPv6 headers.
pub const PTB_QUOTE_LEN: usize = IPV6_MIN_MTU as usize - IPV6_HLEN - 8;

/// The IPv6 header of an ICMPv6 error with a [`PTB_QUOTE_LEN`]-byte quote.
#[inline(always)]
pub fn icmp_error_ipv6(src: &[u8; 16], dst: &[u8; 16], hop_limit: u8) -> [u8; IPV6_HLEN] {
    let mut h = [0u8; IPV6_HLEN];
    h[0] = 0x60;
    let len = ((8 + PTB_QUOTE_LEN) as u16).to_be_bytes();
    h[4] = len[0];
    h[5] = len[1];
    h[6] = IPPROTO_ICMPV6;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(src);
    h[24..40].copy_from_slice(dst);
    h
}

/// The 8-byte Packet Too Big header with a zero checksum (filled in later).
#[inline(always)]
pub fn ptb_header(mtu: u32) -> [u8; 8] {
    let m = mtu.to_be_bytes();
    [ICMPV6_PACKET_TOO_BIG, 0, 0, 0, m[0], m[1], m[2], m[3]]
}

/// The MTU to report for a tunnel whose path MTU is `path_mtu`: the tunnel MTU (path MTU
/// minus the 40-byte outer header), never below the IPv6 minimum.
#[inline(always)]
pub fn tunnel_mtu(path_mtu: u32) -> u32 {
    let t = path_mtu.saturating_sub(IPV6_HLEN as u32);
    if t < IPV6_MIN_MTU { IPV6_MIN_MTU } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum;

    #[test]
    fn outer_header_layout() {
        let src = [1u8; 16];
        let dst = [2u8; 16];
        // Inner: version 6, traffic class 0xb8 (EF), flow label 0x12345.
        let h = outer_ipv6([0x6b, 0x81, 0x23, 0x45], 1000, 64, &src, &dst);
        assert_eq!(&h[..8], &[0x6b, 0x81, 0x23, 0x45, 0x03, 0xe8, 41, 64]);
        assert_eq!(&h[8..24], &src);
        assert_eq!(&h[24..40], &dst);
    }

    #[test]
    fn tunnel_headers_in_place_match_the_outer_header() {
        let (src, dst) = ([1u8; 16], [2u8; 16]);
        let mut h = [0xeeu8; 54];
        write_tunnel_headers(
            &mut h,
            &[0xa; 6],
            &[0xb; 6],
            [0x6b, 0x81, 0x23, 0x45],
            1000,
            64,
            &src,
            &dst,
        );
        assert_eq!(
            &h[..14],
            &[
                0xa, 0xa, 0xa, 0xa, 0xa, 0xa, 0xb, 0xb, 0xb, 0xb, 0xb, 0xb, 0x86, 0xdd
            ]
        );
        assert_eq!(
            h[14..],
            outer_ipv6([0x6b, 0x81, 0x23, 0x45], 1000, 64, &src, &dst)
        );
    }

    #[test]
    fn ptb_checksum_over_pseudo_header() {
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let quote = vec![0xabu8; PTB_QUOTE_LEN];
        let hdr = ptb_header(1460);
        let sum = csum::pseudo_header(&src, &dst, (8 + PTB_QUOTE_LEN) as u32, 58)
            + csum::sum_be16(&hdr)
            + csum::sum_be16(&quote);
        let c = csum::finish(sum);
        // Verifying: the sum including the checksum folds to 0xffff.
        let mut with = hdr;
        with[2..4].copy_from_slice(&c.to_be_bytes());
        let check = csum::pseudo_header(&src, &dst, (8 + PTB_QUOTE_LEN) as u32, 58)
            + csum::sum_be16(&with)
            + csum::sum_be16(&quote);
        assert_eq!(csum::finish(check), 0);
    }

    #[test]
    fn tunnel_mtu_is_clamped() {
        assert_eq!(tunnel_mtu(1500), 1460);
        assert_eq!(tunnel_mtu(1300), 1280);
        assert_eq!(tunnel_mtu(0), 1280);
    }
}
