//! Mobility Header signalling on the wire: receiving Binding Updates, sending Binding
//! Acknowledgements (with a type 2 routing header) and Binding Errors.
//!
//! Receiving: a raw IPPROTO_MH socket. On kernels without `CONFIG_IPV6_MIP6` the XDP program
//! has already moved the HoA into the IPv6 source and the CoA into a retyped destination
//! option (see `docs/design.md`), which IPV6_RECVDSTOPTS hands us. The kernel verifies the MH
//! checksum for raw MH sockets and drops bad ones; we verify again and count.
//!
//! Sending: this kernel refuses type 2 routing headers through the socket API, so BAs are
//! built whole — IPv6 header, RH2, MH with its checksum over the HoA as final destination
//! (RFC 6275 §6.1.1) — and sent on an IPPROTO_RAW socket.

use std::net::Ipv6Addr;

use anyhow::Context as _;
use ha_common::mh::{
    self, BaFields, IPPROTO_MH, IPPROTO_ROUTING, Message, MhError, MobilityHeader, MobilityOption,
};
use serde::Serialize;

use crate::{
    home_agent::registrar::BindingUpdate,
    sock::{RawSocket, Received},
};

pub use ha_common::mh::HAO_SWAPPED;

/// Signalling counters, shown by `hagent stats`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SignallingStats {
    /// Mobile node role: BUs sent.
    pub bu_sent: u64,
    pub bu_received: u64,
    pub ba_sent: u64,
    pub be_sent: u64,
    pub dropped_bad_checksum: u64,
    pub dropped_malformed: u64,
    pub dropped_not_bu: u64,
    pub send_errors: u64,
}

/// The MH receive socket.
pub struct MhSocket {
    sock: RawSocket,
}

impl MhSocket {
    pub fn new() -> anyhow::Result<Self> {
        let sock =
            RawSocket::new(IPPROTO_MH as i32).context("opening the Mobility Header socket")?;
        sock.set_int(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        sock.set_int(libc::IPPROTO_IPV6, libc::IPV6_RECVDSTOPTS, 1)?;
        // Room for bursts (every MN re-registering after an outage): 16 MiB holds ~10k BUs.
        // SO_RCVBUFFORCE passes net.core.rmem_max (we run as root); fall back to the limit.
        if sock
            .set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20)
            .is_err()
        {
            sock.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, 16 << 20)?;
        }
        Ok(Self { sock })
    }

    pub async fn recv(&self) -> anyhow::Result<Received> {
        self.sock.recv().await
    }
}

/// Received Mobility Headers, in two bounded queues: a flood of Binding Updates for home
/// addresses nobody registered never delays the ones for existing bindings or for home
/// addresses the ACL allows. When a queue is full its message is dropped and counted — the
/// mobile node retransmits — rather than held: nothing here grows without a bound.
pub struct Inbox {
    pub priority: tokio::sync::mpsc::Receiver<Received>,
    pub others: tokio::sync::mpsc::Receiver<Received>,
    /// Messages dropped because their queue was full.
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Which queue a Binding Update goes to, decided as it is read: its home address (the IPv6
/// source, after the data plane swapped the Home Address option in) is bound — the data
/// plane's binding map says so — or allowed by an ACL rule.
pub struct Priority {
    pub bound: aya::maps::HashMap<aya::maps::MapData, [u8; 16], ha_common::abi::BindingEntry>,
    /// Shared with the daemon, which replaces it when a reload changes the ACL.
    pub allowed: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<Ipv6Addr>>>,
}

impl Priority {
    fn of(&self, rx: &Received) -> bool {
        self.allowed.read().is_ok_and(|a| a.contains(&rx.src))
            || self.bound.get(&rx.src.octets(), 0).is_ok()
    }
}

/// Queue sizes of the [`Inbox`].
/// A queued message is ~150 bytes: both together stay under 10 MB.
pub const PRIORITY_QUEUE: usize = 32_768;
pub const OTHERS_QUEUE: usize = 32_768;

/// Reads `sock` on a task of its own into an [`Inbox`]; without `priority` (the mobile node,
/// which receives only BAs from its home agent) everything goes to the priority queue.
pub fn spawn_reader(
    sock: MhSocket,
    priority: Option<Priority>,
) -> (Inbox, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::Ordering;
    let (ptx, prx) = tokio::sync::mpsc::channel(PRIORITY_QUEUE);
    let (otx, orx) = tokio::sync::mpsc::channel(OTHERS_QUEUE);
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = dropped.clone();
    let task = tokio::spawn(async move {
        loop {
            match sock.recv().await {
                Ok(rx) => {
                    let first = priority.as_ref().is_none_or(|p| p.of(&rx));
                    let queue = if first { &ptx } else { &otx };
                    match queue.try_send(rx) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving a Mobility Header failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    (
        Inbox {
            priority: prx,
            others: orx,
            dropped,
        },
        task,
    )
}

/// Why a received MH was not a Binding Update to act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    BadChecksum,
    /// RFC 6275 §9.2 format errors (silently discarded).
    Malformed(MhError),
    /// An MH type we do not know: answer with a Binding Error, status 2 (§9.2).
    UnknownType {
        mh_type: u8,
        reply_to: Ipv6Addr,
        hoa: Ipv6Addr,
    },
    /// Known but not for a home agent to act on (BA, BE, RR messages...).
    NotBindingUpdate,
}

/// The care-of address the data plane left in the retyped Home Address option, if any.
fn swapped_coa(dstopts: &[u8]) -> Option<Ipv6Addr> {
    let len = dstopts.len().min((*dstopts.get(1)? as usize + 1) * 8);
    let mut pos = 2;
    while pos < len {
        let t = dstopts[pos];
        if t == 0 {
            pos += 1;
            continue;
        }
        let l = *dstopts.get(pos + 1)? as usize;
        if t == HAO_SWAPPED && l == 16 {
            let a: [u8; 16] = dstopts.get(pos + 2..pos + 18)?.try_into().ok()?;
            return Some(Ipv6Addr::from(a));
        }
        pos += 2 + l;
    }
    None
}

/// Interprets a received Mobility Header as a Binding Update (RFC 6275 §9.2, §9.5.1).
pub fn parse_bu(rx: &Received) -> Result<BindingUpdate, Rejected> {
    let coa_from_hao = rx.dstopts.as_deref().and_then(swapped_coa);
    let hoa = rx.src;
    let mh = match MobilityHeader::parse(&rx.data) {
        Ok(mh) => mh,
        Err(MhError::UnknownType { mh_type }) => {
            return Err(Rejected::UnknownType {
                mh_type,
                // §9.2: to the source of the offending packet — the CoA when it came with a
                // Home Address option.
                reply_to: coa_from_hao.unwrap_or(rx.src),
                hoa,
            });
        }
        Err(e) => return Err(Rejected::Malformed(e)),
    };
    if !mh.verify_checksum(&rx.src.octets(), &rx.dst.octets()) {
        return Err(Rejected::BadChecksum);
    }
    let Message::BindingUpdate(bu) = mh.message else {
        return Err(Rejected::NotBindingUpdate);
    };
    let mut coa = coa_from_hao.unwrap_or(rx.src);
    let mut prefixes = Vec::new();
    for opt in bu.options.iter() {
        match opt {
            Ok(MobilityOption::AlternateCareOf(a)) => coa = Ipv6Addr::from(a),
            Ok(MobilityOption::MobileNetworkPrefix { prefix_len, prefix }) => {
                prefixes.push((Ipv6Addr::from(prefix), prefix_len))
            }
            Ok(_) => {}
            Err(e) => return Err(Rejected::Malformed(e)),
        }
    }
    Ok(BindingUpdate {
        hoa,
        coa,
        ha_address: rx.dst,
        sequence: bu.sequence,
        flags: bu.flags,
        lifetime_units: bu.lifetime_units,
        prefixes,
    })
}

/// An IPPROTO_RAW socket: we write the whole IPv6 packet.
pub struct PacketSender {
    sock: RawSocket,
}

impl PacketSender {
    pub fn new() -> anyhow::Result<Self> {
        let sock = RawSocket::new(libc::IPPROTO_RAW).context("opening the IPPROTO_RAW socket")?;
        // Our own DAD probes must not come back to us as someone else's.
        sock.set_int(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 0)?;
        Ok(Self { sock })
    }

    /// Sends a complete IPv6 packet whose first hop is `first_hop` (out of `ifindex` when it is
    /// link-scoped).
    pub fn send(&self, packet: &[u8], first_hop: Ipv6Addr, ifindex: u32) -> std::io::Result<()> {
        self.sock
            .send_to(packet, first_hop, None, ifindex)
            .map(|_| ())
    }
}

/// The IPsec path for signalling (RFC 3776): a raw IPPROTO_MH socket, so the message goes
/// through the kernel's stack and its xfrm policies can protect it with ESP — a packet
/// written whole on an IPPROTO_RAW socket never matches a Mobility Header policy. With
/// `marked`, the packet carries [`SIGNALLING_MARK`](ha_common::abi::SIGNALLING_MARK) and the
/// TC egress program adds the Home Address option (BU) or the type 2 routing header (BA) after
/// ESP was applied. The kernel computes the MH checksum (raw MH sockets always do).
pub struct MhSender {
    sock: RawSocket,
    marked: std::cell::Cell<bool>,
}

impl MhSender {
    pub fn new() -> anyhow::Result<Self> {
        let sock = RawSocket::new(IPPROTO_MH as i32)
            .context("opening the Mobility Header socket for IPsec signalling")?;
        // Send-only: every raw MH socket gets a copy of every received MH; drop ours at the
        // socket (a classic BPF filter returning 0) instead of letting the queue fill.
        let drop_all = [libc::sock_filter {
            code: 0x06, // BPF_RET | BPF_K
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: drop_all.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `drop_all`, both alive for the call; the kernel copies them.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &prog as *const libc::sock_fprog as *const u8,
                size_of::<libc::sock_fprog>(),
            )
        };
        crate::sock::setsockopt_bytes(
            sock.raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            bytes,
        )?;
        Ok(Self {
            sock,
            marked: std::cell::Cell::new(false),
        })
    }

    /// Sends one Mobility Header message from `src` to `dst`.
    pub fn send(
        &self,
        message: &[u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        marked: bool,
    ) -> anyhow::Result<()> {
        if self.marked.get() != marked {
            let mark = if marked {
                ha_common::abi::SIGNALLING_MARK
            } else {
                0
            };
            self.sock
                .set_int(libc::SOL_SOCKET, libc::SO_MARK, mark as i32)?;
            self.marked.set(marked);
        }
        let mut m = message.to_vec();
        // The kernel fills in the checksum.
        if let Some(c) = m.get_mut(4..6) {
            c.fill(0);
        }
        self.sock
            .send_to(&m, dst, Some(src), 0)
            .with_context(|| format!("sending a Mobility Header message {src} → {dst}"))?;
        Ok(())
    }
}

/// IPv6 header for a packet with `payload_len` bytes after it.
pub fn ipv6_header(
    next_header: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    payload_len: usize,
) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next_header;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

/// A Binding Acknowledgement packet from `ha` for `hoa`: to the CoA with a type 2 routing
/// header carrying the HoA (§6.1.8, §9.5.4), or straight to the HoA when the MN is home.
pub fn ba_packet(
    ha: Ipv6Addr,
    hoa: Ipv6Addr,
    coa: Ipv6Addr,
    ba: &BaFields,
    refresh_units: Option<u16>,
) -> anyhow::Result<Vec<u8>> {
    let mhbuf = ba_message(ha, hoa, ba, refresh_units)?;
    let n = mhbuf.len();
    let mut p = Vec::with_capacity(40 + 24 + n);
    if coa == hoa {
        p.extend_from_slice(&ipv6_header(IPPROTO_MH, 64, ha, hoa, n));
    } else {
        p.extend_from_slice(&ipv6_header(IPPROTO_ROUTING, 64, ha, coa, 24 + n));
        let mut rh2 = [0u8; 24];
        mh::build_rh2(&mut rh2, IPPROTO_MH, &hoa.octets()).map_err(|e| anyhow::anyhow!("{e}"))?;
        p.extend_from_slice(&rh2);
    }
    p.extend_from_slice(&mhbuf);
    Ok(p)
}

/// The Binding Acknowledgement message alone, its checksum over `ha` → `hoa`.
pub fn ba_message(
    ha: Ipv6Addr,
    hoa: Ipv6Addr,
    ba: &BaFields,
    refresh_units: Option<u16>,
) -> anyhow::Result<Vec<u8>> {
    let mut mhbuf = [0u8; 64];
    // The checksum's pseudo-header destination is the final one: the HoA (§6.1.1).
    let n = mh::build_binding_ack(
        &mut mhbuf,
        &ha.octets(),
        &hoa.octets(),
        ba,
        refresh_units,
        &[],
    )
    .map_err(|e| anyhow::anyhow!("building a BA: {e}"))?;
    Ok(mhbuf[..n].to_vec())
}

/// The Binding Update message alone, its checksum over `hoa` → `ha` (§6.1.1).
pub fn bu_message(
    hoa: Ipv6Addr,
    ha: Ipv6Addr,
    sequence: u16,
    lifetime_units: u16,
) -> anyhow::Result<Vec<u8>> {
    let mut mhbuf = [0u8; 32];
    let fields = mh::BuFields {
        sequence,
        flags: mh::BU_FLAG_A | mh::BU_FLAG_H,
        lifetime_units,
    };
    let n = mh::build_binding_update(&mut mhbuf, &hoa.octets(), &ha.octets(), &fields, &[])
        .map_err(|e| anyhow::anyhow!("building a BU: {e}"))?;
    Ok(mhbuf[..n].to_vec())
}

/// A mobile node's Binding Update to its home agent: from the CoA with a Home Address option
/// (§11.7.1), or — when `coa == hoa`, a deregistration from home — from the HoA without one
/// (§11.5.4). The MH checksum's pseudo-header source is the HoA either way (§6.1.1).
pub fn bu_packet(
    hoa: Ipv6Addr,
    coa: Ipv6Addr,
    ha: Ipv6Addr,
    sequence: u16,
    lifetime_units: u16,
) -> anyhow::Result<Vec<u8>> {
    let mhbuf = bu_message(hoa, ha, sequence, lifetime_units)?;
    let n = mhbuf.len();
    let mut p = Vec::with_capacity(40 + 24 + n);
    if coa == hoa {
        p.extend_from_slice(&ipv6_header(IPPROTO_MH, 64, hoa, ha, n));
    } else {
        p.extend_from_slice(&ipv6_header(mh::IPPROTO_DSTOPTS, 64, coa, ha, 24 + n));
        let mut d = [0u8; 24];
        mh::build_hao_dest_opts(&mut d, IPPROTO_MH, &hoa.octets())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        p.extend_from_slice(&d);
    }
    p.extend_from_slice(&mhbuf);
    Ok(p)
}

/// A Binding Error packet (§6.1.9) from `src` to `dst` about `hoa`.
pub fn be_packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    status: u8,
    hoa: Ipv6Addr,
) -> anyhow::Result<Vec<u8>> {
    let mut mhbuf = [0u8; 32];
    let n = mh::build_binding_error(
        &mut mhbuf,
        &src.octets(),
        &dst.octets(),
        status,
        &hoa.octets(),
    )
    .map_err(|e| anyhow::anyhow!("building a BE: {e}"))?;
    let mut p = Vec::with_capacity(40 + n);
    p.extend_from_slice(&ipv6_header(IPPROTO_MH, 64, src, dst, n));
    p.extend_from_slice(&mhbuf[..n]);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ba_with_rh2_layout_and_checksum() {
        let (ha, hoa, coa) = (
            a("2001:db8:bee5::c001:babe"),
            a("2001:db8:bee5::dead:face"),
            a("2001:db8:f00d::dead:face"),
        );
        let ba = BaFields {
            status: 0,
            flags: 0,
            sequence: 7,
            lifetime_units: 100,
        };
        let p = ba_packet(ha, hoa, coa, &ba, None).unwrap();
        assert_eq!(p[6], IPPROTO_ROUTING);
        assert_eq!(&p[24..40], &coa.octets());
        let rh2 = mh::parse_rh2(&p[40..64]).unwrap();
        assert_eq!(Ipv6Addr::from(rh2.home_address), hoa);
        let mh = MobilityHeader::parse(&p[64..]).unwrap();
        assert!(
            mh.verify_checksum(&ha.octets(), &hoa.octets()),
            "checksum over the HoA"
        );
        match mh.message {
            Message::BindingAck(b) => {
                assert_eq!((b.status, b.sequence, b.lifetime_units), (0, 7, 100))
            }
            m => panic!("{m:?}"),
        }
        assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize, p.len() - 40);
    }

    #[test]
    fn swapped_hao_yields_the_coa() {
        let mut h = vec![135u8, 2, 1, 2, 0, 0, HAO_SWAPPED, 16];
        h.extend_from_slice(&a("2001:db8:f00d::1").octets());
        assert_eq!(swapped_coa(&h), Some(a("2001:db8:f00d::1")));
        h[6] = 0xc9;
        assert_eq!(swapped_coa(&h), None);
        assert_eq!(swapped_coa(&[1]), None);
    }

    #[test]
    fn bu_parsing_uses_the_alternate_coa_and_checks_the_checksum() {
        let (ha, hoa) = (a("2001:db8:bee5::c001:babe"), a("2001:db8:bee5::dead:face"));
        let mut buf = [0u8; 64];
        let alt = a("2001:db8:f00d::2");
        let n = mh::build_binding_update(
            &mut buf,
            &hoa.octets(),
            &ha.octets(),
            &mh::BuFields {
                sequence: 3,
                flags: mh::BU_FLAG_A | mh::BU_FLAG_H,
                lifetime_units: 10,
            },
            &[MobilityOption::AlternateCareOf(alt.octets())],
        )
        .unwrap();
        let rx = Received {
            data: buf[..n].to_vec(),
            src: hoa,
            dst: ha,
            ifindex: 2,
            dstopts: None,
            hop_limit: None,
        };
        let bu = parse_bu(&rx).unwrap();
        assert_eq!(
            (bu.hoa, bu.coa, bu.ha_address, bu.sequence),
            (hoa, alt, ha, 3)
        );
        let mut bad = rx.clone();
        bad.data[6] ^= 1;
        assert_eq!(parse_bu(&bad), Err(Rejected::BadChecksum));
    }
}
