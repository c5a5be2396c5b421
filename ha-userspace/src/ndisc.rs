//! Neighbor Discovery messages the daemon sends on its links (RFC 4861/4862 as RFC 6275 §10.3.1,
//! §10.4.1 and §11.5.4 use them): the Duplicate Address Detection probe for a new binding's
//! home address, the unsolicited Neighbor Advertisement that points the home link at the home
//! agent afterwards (or, from a mobile node back home, at itself), and a mobile node's
//! solicitation of its home agent from the unspecified address.
//!
//! Answers are not read here: the XDP program notes what DAD must know (`HA_DAD`) and answers
//! solicitations for bound home addresses itself.

use std::{net::Ipv6Addr, sync::Arc, time::Duration};

use anyhow::Context as _;
use ha_common::nd::{self, ALL_NODES, ICMPV6_NS, NA_FLAG_OVERRIDE};

use crate::mobility::{PacketSender, ipv6_header};

/// RFC 4861 RetransTimer × RFC 4862 DupAddrDetectTransmits (1).
pub const DAD_TIMEOUT: Duration = Duration::from_secs(1);

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(nd::solicited_node(&a.octets()))
}

/// A Neighbor Solicitation for DAD: from ::, to the target's solicited-node group, no
/// source link-layer address option (RFC 4862 §5.4.2).
pub fn dad_ns_packet(target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut icmp = [0u8; nd::NS_MAX_LEN];
    icmp[0] = ICMPV6_NS;
    icmp[8..24].copy_from_slice(&target.octets());
    let c = nd::icmpv6_checksum(
        &Ipv6Addr::UNSPECIFIED.octets(),
        &dst.octets(),
        &icmp,
        nd::ND_MIN_LEN,
    );
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv6_header(58, 255, Ipv6Addr::UNSPECIFIED, dst, nd::ND_MIN_LEN).to_vec();
    p.extend_from_slice(&icmp[..nd::ND_MIN_LEN]);
    p
}

/// An unsolicited Neighbor Advertisement to all nodes for `target` with our link-layer address
/// (RFC 6275 §10.4.1: Router 0, Solicited 0, Override 1).
pub fn unsolicited_na_packet(src: Ipv6Addr, target: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    nd::na_packet(
        &src.octets(),
        &ALL_NODES,
        &target.octets(),
        NA_FLAG_OVERRIDE,
        &mac,
    )
    .to_vec()
}

/// Sends NS and NA on the node's links.
#[derive(Clone)]
pub struct Ndisc {
    sender: Arc<PacketSender>,
}

impl Ndisc {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sender: Arc::new(PacketSender::new()?),
        })
    }

    /// Sends a DAD probe for `target` on `ifindex` (the XDP program watches for answers).
    pub fn probe(&self, ifindex: u32, target: Ipv6Addr) -> anyhow::Result<()> {
        self.send_unspecified_ns(ifindex, target)
            .with_context(|| format!("sending the DAD probe for {target}"))
    }

    /// Sends a Neighbor Solicitation for `target` from the unspecified address (the node
    /// that owns it answers all nodes) — the DAD probe's packet, for another purpose.
    pub fn solicit_unspecified(&self, ifindex: u32, target: Ipv6Addr) -> anyhow::Result<()> {
        self.send_unspecified_ns(ifindex, target)
            .with_context(|| format!("soliciting {target}"))
    }

    fn send_unspecified_ns(&self, ifindex: u32, target: Ipv6Addr) -> std::io::Result<()> {
        self.sender
            .send(&dad_ns_packet(target), solicited_node(target), ifindex)
    }

    /// Tells the link `ifindex` that `target` is now at `mac`.
    pub fn advertise(
        &self,
        ifindex: u32,
        src: Ipv6Addr,
        target: Ipv6Addr,
        mac: [u8; 6],
    ) -> anyhow::Result<()> {
        let p = unsolicited_na_packet(src, target, mac);
        self.sender
            .send(&p, Ipv6Addr::from(ALL_NODES), ifindex)
            .with_context(|| format!("sending the unsolicited NA for {target}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_common::mh::verify_upper_layer_checksum;

    #[test]
    fn solicited_node_group() {
        assert_eq!(
            solicited_node("2001:db8:bee5::dead:face".parse().unwrap()),
            "ff02::1:ffad:face".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn dad_ns_and_na_are_well_formed() {
        let hoa: Ipv6Addr = "2001:db8:bee5::dead:face".parse().unwrap();
        let ns = dad_ns_packet(hoa);
        assert_eq!(ns.len(), 64);
        assert_eq!(ns[7], 255);
        assert_eq!(&ns[8..24], &[0u8; 16]);
        assert!(verify_upper_layer_checksum(
            &[0; 16],
            &solicited_node(hoa).octets(),
            58,
            &ns[40..]
        ));
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let na = unsolicited_na_packet(src, hoa, [2, 0, 0, 0, 0, 1]);
        assert_eq!(na[40], 136);
        assert_eq!(na[44], 0x20, "R=0 S=0 O=1");
        assert_eq!(&na[64..66], &[2, 1]);
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        assert!(verify_upper_layer_checksum(
            &src.octets(),
            &all_nodes.octets(),
            58,
            &na[40..]
        ));
    }
}
