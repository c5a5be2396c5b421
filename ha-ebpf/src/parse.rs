//! Header parsing: Ethernet (with an optional 802.1Q/802.1ad tag) and the fixed IPv6 header.

use crate::frame::Frame;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV6_HLEN: usize = 40;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

/// IPv6 next-header values the data plane cares about.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_MH: u8 = 135;

/// What the Ethernet header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2 {
    /// EtherType after an optional VLAN tag (host byte order).
    pub ethertype: u16,
    /// Offset of the layer 3 header.
    pub l3_offset: usize,
    /// VLAN tag control information, 0 when untagged.
    pub vlan_tci: u16,
}

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The frame ends before a header it announces.
    Truncated,
    /// The IPv6 version field is not 6.
    BadVersion,
}

#[inline(always)]
fn be16<F: Frame>(f: &F, off: usize) -> Result<u16, ParseError> {
    f.load::<[u8; 2]>(off)
        .map(u16::from_be_bytes)
        .ok_or(ParseError::Truncated)
}

/// Parses the Ethernet header and one optional VLAN tag.
#[inline(always)]
pub fn parse_l2<F: Frame>(f: &F) -> Result<L2, ParseError> {
    let ethertype = be16(f, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let vlan_tci = be16(f, ETH_HLEN)?;
        let inner = be16(f, ETH_HLEN + 2)?;
        return Ok(L2 {
            ethertype: inner,
            l3_offset: ETH_HLEN + VLAN_HLEN,
            vlan_tci,
        });
    }
    Ok(L2 {
        ethertype,
        l3_offset: ETH_HLEN,
        vlan_tci: 0,
    })
}

/// The fields of a fixed IPv6 header the data plane uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    /// Version, traffic class and flow label, as on the wire.
    pub first_word: [u8; 4],
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl Ipv6 {
    /// Length of the whole packet (header + payload).
    #[inline(always)]
    pub fn total_len(&self) -> usize {
        IPV6_HLEN + self.payload_len as usize
    }

    /// Decodes a 40-byte header.
    #[inline(always)]
    pub fn from_bytes(h: &[u8; IPV6_HLEN]) -> Result<Self, ParseError> {
        if h[0] >> 4 != 6 {
            return Err(ParseError::BadVersion);
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        Ok(Self {
            first_word: [h[0], h[1], h[2], h[3]],
            payload_len: u16::from_be_bytes([h[4], h[5]]),
            next_header: h[6],
            hop_limit: h[7],
            src,
            dst,
        })
    }
}

/// Parses the IPv6 header at `offset`, checking that the frame holds the whole packet it
/// announces (trailing bytes after it, e.g. Ethernet padding, are allowed).
#[inline(always)]
pub fn parse_ipv6<F: Frame>(f: &F, offset: usize) -> Result<Ipv6, ParseError> {
    let h = f
        .ptr_at::<[u8; IPV6_HLEN]>(offset)
        .ok_or(ParseError::Truncated)?;
    // SAFETY: `ptr_at` checked that the header lies inside the frame; it is read in place,
    // without a copy on the (BPF) stack.
    let ip = Ipv6::from_bytes(unsafe { &*h })?;
    if offset + ip.total_len() > f.len() {
        return Err(ParseError::Truncated);
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0xaa; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    #[test]
    fn untagged_ipv6() {
        let f = eth(ETH_P_IPV6);
        let l2 = parse_l2(&f.as_slice()).unwrap();
        assert_eq!(
            l2,
            L2 {
                ethertype: ETH_P_IPV6,
                l3_offset: 14,
                vlan_tci: 0
            }
        );
    }

    #[test]
    fn single_vlan_tag() {
        let mut f = eth(ETH_P_8021Q);
        f.extend_from_slice(&[0x00, 0x2a, 0x86, 0xdd]);
        let l2 = parse_l2(&f.as_slice()).unwrap();
        assert_eq!(
            l2,
            L2 {
                ethertype: ETH_P_IPV6,
                l3_offset: 18,
                vlan_tci: 42
            }
        );
    }

    #[test]
    fn truncated_frames() {
        assert_eq!(parse_l2(&[0u8; 13].as_slice()), Err(ParseError::Truncated));
        let mut f = eth(ETH_P_8021Q);
        f.extend_from_slice(&[0x00, 0x2a, 0x86]);
        assert_eq!(parse_l2(&f.as_slice()), Err(ParseError::Truncated));
    }

    fn ipv6_packet(payload: usize) -> Vec<u8> {
        let mut f = eth(ETH_P_IPV6);
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        h[6] = IPPROTO_UDP;
        h[7] = 64;
        h[8] = 0x20;
        h[24] = 0xfe;
        f.extend_from_slice(&h);
        f.extend(std::iter::repeat_n(0u8, payload));
        f
    }

    #[test]
    fn ipv6_header_fields() {
        let f = ipv6_packet(8);
        let ip = parse_ipv6(&f.as_slice(), ETH_HLEN).unwrap();
        assert_eq!(ip.payload_len, 8);
        assert_eq!(ip.next_header, IPPROTO_UDP);
        assert_eq!(ip.hop_limit, 64);
        assert_eq!(ip.src[0], 0x20);
        assert_eq!(ip.dst[0], 0xfe);
        assert_eq!(ip.total_len(), 48);
    }

    #[test]
    fn ipv6_payload_length_beyond_frame_is_truncated() {
        let mut f = ipv6_packet(8);
        f.truncate(f.len() - 1);
        assert_eq!(
            parse_ipv6(&f.as_slice(), ETH_HLEN),
            Err(ParseError::Truncated)
        );
    }

    #[test]
    fn ipv6_bad_version() {
        let mut f = ipv6_packet(0);
        f[ETH_HLEN] = 0x40;
        assert_eq!(
            parse_ipv6(&f.as_slice(), ETH_HLEN),
            Err(ParseError::BadVersion)
        );
    }
}
