//! Neighbor Discovery for the home link (RFC 4861/4862 as RFC 6275 §10.3.1 and §10.4.1 use
//! it): Duplicate Address Detection for a home address before its first binding is accepted,
//! and the unsolicited Neighbor Advertisement that points the home link at us afterwards.
//!
//! DAD is asynchronous: the daemon keeps serving other BUs while one waits (UMIP blocks a
//! thread for the whole second).

use std::{
    collections::HashMap,
    net::Ipv6Addr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use ha_common::mh::upper_layer_checksum;
use tokio::sync::oneshot;

use crate::{
    mobility::{PacketSender, ipv6_header},
    sock::{RawSocket, multicast_membership},
};

const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;
/// RFC 4861 RetransTimer × RFC 4862 DupAddrDetectTransmits (1).
pub const DAD_TIMEOUT: Duration = Duration::from_secs(1);

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// A Neighbor Solicitation for DAD: from ::, to the target's solicited-node group, no
/// source link-layer address option (RFC 4862 §5.4.2).
pub fn dad_ns_packet(target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut icmp = vec![ICMPV6_NS, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    let c = upper_layer_checksum(&Ipv6Addr::UNSPECIFIED.octets(), &dst.octets(), 58, &icmp, 2);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv6_header(58, 255, Ipv6Addr::UNSPECIFIED, dst, icmp.len()).to_vec();
    p.extend_from_slice(&icmp);
    p
}

/// An unsolicited Neighbor Advertisement to all nodes for `target` with our link-layer address
/// (RFC 6275 §10.4.1: Router 0, Solicited 0, Override 1).
pub fn unsolicited_na_packet(src: Ipv6Addr, target: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![ICMPV6_NA, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    // Target Link-Layer Address option (type 2, 1 × 8 octets).
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let c = upper_layer_checksum(&src.octets(), &dst.octets(), 58, &icmp, 2);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv6_header(58, 255, src, dst, icmp.len()).to_vec();
    p.extend_from_slice(&icmp);
    p
}

type Waiters = Arc<Mutex<HashMap<(u32, Ipv6Addr), oneshot::Sender<()>>>>;

/// Sends NS/NA and watches for answers on every home link.
#[derive(Clone)]
pub struct Ndisc {
    icmp: Arc<RawSocket>,
    sender: Arc<PacketSender>,
    waiters: Waiters,
}

impl Ndisc {
    /// Opens the ICMPv6 socket and starts the task that matches NS/NA to pending DADs.
    pub fn start() -> anyhow::Result<Self> {
        let icmp = RawSocket::new(libc::IPPROTO_ICMPV6).context("opening the ICMPv6 socket")?;
        icmp.set_int(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        icmp.set_int(libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        // ICMP6_FILTER: block everything but NS and NA (a set bit blocks a type).
        let mut filter = [0xffu8; 32];
        for t in [ICMPV6_NS, ICMPV6_NA] {
            filter[(t >> 3) as usize] &= !(1 << (t & 7));
        }
        crate::sock::setsockopt_bytes(
            icmp.raw_fd(),
            libc::IPPROTO_ICMPV6,
            1, /* ICMP6_FILTER */
            &filter,
        )?;
        let me = Self {
            icmp: Arc::new(icmp),
            sender: Arc::new(PacketSender::new()?),
            waiters: Arc::default(),
        };
        let rx = me.clone();
        tokio::spawn(async move {
            loop {
                match rx.icmp.recv().await {
                    Ok(r) => rx.on_packet(&r.data, r.ifindex, r.src, r.hop_limit),
                    Err(e) => {
                        tracing::warn!(error = %e, "ICMPv6 receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(me)
    }

    fn on_packet(&self, icmp: &[u8], ifindex: u32, src: Ipv6Addr, hop_limit: Option<u8>) {
        // RFC 4861 §7.1.1/§7.1.2: hop limit 255, code 0, at least 24 octets.
        if icmp.len() < 24 || icmp[1] != 0 || hop_limit.is_some_and(|h| h != 255) {
            return;
        }
        let Ok(target) = <[u8; 16]>::try_from(&icmp[8..24]).map(Ipv6Addr::from) else {
            return;
        };
        // Someone owns the address (NA), or is claiming it too (NS from :: during its DAD).
        let conflict = icmp[0] == ICMPV6_NA || (icmp[0] == ICMPV6_NS && src.is_unspecified());
        if conflict
            && let Some(tx) = self
                .waiters
                .lock()
                .expect("waiters lock")
                .remove(&(ifindex, target))
        {
            let _ = tx.send(());
        }
    }

    /// Duplicate Address Detection for `hoa` on the link `ifindex`: true when nobody answered
    /// within [`DAD_TIMEOUT`].
    pub async fn dad(&self, ifindex: u32, hoa: Ipv6Addr) -> anyhow::Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters lock")
            .insert((ifindex, hoa), tx);
        let group = solicited_node(hoa);
        // Hear other nodes' DAD for the same address.
        let joined = multicast_membership(self.icmp.raw_fd(), group, ifindex, true).is_ok();
        let sent = self.sender.send(&dad_ns_packet(hoa), group, ifindex);
        let outcome = match sent {
            Ok(()) => Ok(tokio::time::timeout(DAD_TIMEOUT, rx).await.is_err()),
            Err(e) => Err(anyhow::Error::from(e).context(format!("sending the DAD NS for {hoa}"))),
        };
        self.waiters
            .lock()
            .expect("waiters lock")
            .remove(&(ifindex, hoa));
        if joined {
            let _ = multicast_membership(self.icmp.raw_fd(), group, ifindex, false);
        }
        outcome
    }

    /// Sends a Neighbor Solicitation for `target` from the unspecified address (the node
    /// that owns it answers all nodes).
    pub fn solicit_unspecified(&self, ifindex: u32, target: Ipv6Addr) -> anyhow::Result<()> {
        self.sender
            .send(&dad_ns_packet(target), solicited_node(target), ifindex)
            .with_context(|| format!("soliciting {target}"))
    }

    /// Tells the home link that `hoa` is now at our MAC.
    pub fn advertise(
        &self,
        ifindex: u32,
        src: Ipv6Addr,
        hoa: Ipv6Addr,
        mac: [u8; 6],
    ) -> anyhow::Result<()> {
        let p = unsolicited_na_packet(src, hoa, mac);
        self.sender
            .send(&p, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), ifindex)
            .with_context(|| format!("sending the unsolicited NA for {hoa}"))
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
