//! Layer 2 parsing: Ethernet with at most one 802.1Q/802.1ad tag.

use crate::frame::Frame;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

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
}
