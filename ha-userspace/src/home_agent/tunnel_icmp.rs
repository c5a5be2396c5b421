//! ICMPv6 errors about the tunnel, relayed to the original sender (RFC 2473 §8): a node on the
//! path to a care-of address (or the CoA itself) that cannot deliver a tunnel packet reports
//! to the tunnel's entry point, the home agent — whose XDP program sent the packet without the
//! kernel's knowledge, so the kernel ignores the report. The original sender (a correspondent)
//! would never learn. Here the home agent turns it into the error RFC 2473 §8.1 says: Packet
//! Too Big with the tunnel's MTU for a Packet Too Big (at least 1280), Destination Unreachable
//! code 3 (address unreachable) for the others. Pure: the home agent checks the tunnel was its
//! own and sends what [`relay`] returns.

use std::net::Ipv6Addr;

use crate::config::is_global_unicast;

pub const DEST_UNREACHABLE: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAMETER_PROBLEM: u8 = 4;
/// Destination Unreachable, code 3: address unreachable.
const ADDRESS_UNREACHABLE: u8 = 3;
const IPPROTO_IPV6: u8 = 41;
/// Outer IPv6 header of the tunnel (RFC 2473: no encapsulation limit option here).
const TUNNEL_HEADER: u32 = 40;
/// The relayed error fits the IPv6 minimum MTU: IPv6 + ICMPv6 headers, then the quote.
pub const MAX_QUOTE: usize = 1280 - 40 - 8;

/// What a tunnel error says, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelError {
    /// The tunnel's entry point (our address): the relayed error's source.
    pub entry: Ipv6Addr,
    /// The tunnel's exit (the care-of address).
    pub exit: Ipv6Addr,
    /// The inner packet's destination (a bound HoA, or in a bound prefix).
    pub inner_dst: Ipv6Addr,
    /// Where the relayed error goes: the inner packet's source.
    pub inner_src: Ipv6Addr,
    /// The ICMPv6 message to send (checksum zero: the raw socket fills it in).
    pub message: Vec<u8>,
}

/// Parses an ICMPv6 error `icmp` received by this node about a packet it tunnelled, and
/// builds the error for the inner packet's source. None when it is not an error, not about
/// an IPv6-in-IPv6 packet, or the inner source is no unicast address to report to.
pub fn relay(icmp: &[u8]) -> Option<TunnelError> {
    let t = *icmp.first()?;
    if !matches!(
        t,
        DEST_UNREACHABLE | PACKET_TOO_BIG | TIME_EXCEEDED | PARAMETER_PROBLEM
    ) {
        return None;
    }
    // The invoking packet: the outer header, then (at least) the inner header.
    let outer = icmp.get(8..48)?;
    let inner = icmp.get(48..88)?;
    if outer[0] >> 4 != 6 || outer[6] != IPPROTO_IPV6 || inner[0] >> 4 != 6 {
        return None;
    }
    let a = |b: &[u8]| -> Ipv6Addr {
        let mut x = [0u8; 16];
        x.copy_from_slice(b);
        Ipv6Addr::from(x)
    };
    let (entry, exit) = (a(&outer[8..24]), a(&outer[24..40]));
    let (inner_src, inner_dst) = (a(&inner[8..24]), a(&inner[24..40]));
    if !is_global_unicast(&inner_src) {
        return None;
    }
    let quote = &icmp[48..];
    let quote = &quote[..quote.len().min(MAX_QUOTE)];
    let mut message = Vec::with_capacity(8 + quote.len());
    if t == PACKET_TOO_BIG {
        let mtu = u32::from_be_bytes(icmp.get(4..8)?.try_into().ok()?);
        let inner_mtu = mtu.saturating_sub(TUNNEL_HEADER).max(1280);
        message.extend_from_slice(&[PACKET_TOO_BIG, 0, 0, 0]);
        message.extend_from_slice(&inner_mtu.to_be_bytes());
    } else {
        message.extend_from_slice(&[DEST_UNREACHABLE, ADDRESS_UNREACHABLE, 0, 0, 0, 0, 0, 0]);
    }
    message.extend_from_slice(quote);
    Some(TunnelError {
        entry,
        exit,
        inner_dst,
        inner_src,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn header(nh: u8, src: Ipv6Addr, dst: Ipv6Addr, payload_len: u16) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&payload_len.to_be_bytes());
        h.extend_from_slice(&[nh, 64]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h
    }

    /// An error of `t`/`code` (with `word` after the checksum) quoting a tunnel packet HA →
    /// CoA carrying CN → HoA.
    fn error(t: u8, code: u8, word: u32, inner_src: Ipv6Addr) -> (Vec<u8>, Vec<u8>) {
        let inner = [
            header(17, inner_src, a("2001:db8:bee5::dead:face"), 8),
            vec![0x11; 8],
        ]
        .concat();
        let mut v = vec![t, code, 0, 0];
        v.extend_from_slice(&word.to_be_bytes());
        v.extend(header(
            41,
            a("2001:db8:bee5::c001:babe"),
            a("2001:db8:f00d::dead:face"),
            inner.len() as u16,
        ));
        v.extend_from_slice(&inner);
        (v, inner)
    }

    /// Fixture table: description, error received, expected first 8 bytes of the relayed one.
    #[test]
    fn errors_about_the_tunnel_become_errors_for_the_sender_rfc2473_8_1() {
        let cn = a("2001:db8:cafe::c0de:f001");
        for (what, t, code, word, head) in [
            (
                "the CoA has no tunnel endpoint (parameter problem, next header)",
                4u8,
                1u8,
                40u32,
                [1u8, 3, 0, 0, 0, 0, 0, 0],
            ),
            ("no route to the CoA", 1, 0, 0, [1, 3, 0, 0, 0, 0, 0, 0]),
            (
                "hop limit exceeded on the way",
                3,
                0,
                0,
                [1, 3, 0, 0, 0, 0, 0, 0],
            ),
            (
                "a link of 1400 bytes: the tunnel carries 1360",
                2,
                0,
                1400,
                [2, 0, 0, 0, 0, 0, 0x05, 0x50],
            ),
            (
                "a 1300-byte link still allows the minimum 1280",
                2,
                0,
                1300,
                [2, 0, 0, 0, 0, 0, 0x05, 0x00],
            ),
        ] {
            let (icmp, inner) = error(t, code, word, cn);
            let r = relay(&icmp).unwrap_or_else(|| panic!("{what}"));
            assert_eq!(r.inner_src, cn, "{what}");
            assert_eq!(r.entry, a("2001:db8:bee5::c001:babe"), "{what}");
            assert_eq!(r.exit, a("2001:db8:f00d::dead:face"), "{what}");
            assert_eq!(r.message[..8], head, "{what}");
            assert_eq!(
                &r.message[8..],
                &inner[..],
                "{what}: the inner packet quoted"
            );
        }
    }

    #[test]
    fn what_is_not_relayed() {
        let cn = a("2001:db8:cafe::c0de:f001");
        // An echo reply, not an error.
        assert_eq!(relay(&[129, 0, 0, 0, 0, 0, 0, 0]), None);
        // An error about a plain (not tunnelled) packet.
        let (mut icmp, _) = error(1, 0, 0, cn);
        icmp[8 + 6] = 17;
        assert_eq!(relay(&icmp), None);
        // Truncated before the inner header.
        let (icmp, _) = error(1, 0, 0, cn);
        assert_eq!(relay(&icmp[..60]), None);
        // The inner source is no unicast address to report to.
        let (icmp, _) = error(1, 0, 0, a("ff02::1"));
        assert_eq!(relay(&icmp), None);
        // A long quote is cut to fit 1280 bytes.
        let (mut icmp, _) = error(1, 0, 0, cn);
        icmp.extend(vec![0u8; 2000]);
        assert_eq!(relay(&icmp).unwrap().message.len(), 8 + MAX_QUOTE);
    }
}
