//! The home agent's ICMPv6 at the edge: one raw socket for what DHAAD (`dhaad`), Mobile Prefix
//! Discovery (`mpd`) and the relay of tunnel errors (`tunnel_icmp`) receive and send, read into
//! a bounded queue; their counters; the budget they share.

use std::{net::Ipv6Addr, time::Duration};

/// The home agent's ICMPv6 socket: Router Advertisements, DHAAD Requests and the errors about
/// tunnel packets in (the kernel's ICMP6_FILTER passes no other type), DHAAD Replies and the
/// relayed errors out; member of each home link's home-agents anycast address.
pub struct Icmpv6Socket {
    sock: crate::sock::RawSocket,
    joined: std::sync::Mutex<std::collections::HashSet<(u32, Ipv6Addr)>>,
}

impl Icmpv6Socket {
    pub fn new() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let sock = crate::sock::RawSocket::new(libc::IPPROTO_ICMPV6)
            .context("opening the home agent's ICMPv6 socket")?;
        // struct icmp6_filter: a set bit blocks that type.
        let mut filter = [u32::MAX; 8];
        // And the errors about tunnel packets (`home_agent::tunnel_icmp`).
        for t in [
            super::dhaad::ROUTER_ADVERTISEMENT,
            super::dhaad::DHAAD_REQUEST,
            super::mpd::MOBILE_PREFIX_SOLICITATION,
            super::tunnel_icmp::DEST_UNREACHABLE,
            super::tunnel_icmp::PACKET_TOO_BIG,
            super::tunnel_icmp::TIME_EXCEEDED,
            super::tunnel_icmp::PARAMETER_PROBLEM,
        ] {
            filter[usize::from(t >> 5)] &= !(1u32 << (t & 31));
        }
        let bytes: Vec<u8> = filter.iter().flat_map(|w| w.to_ne_bytes()).collect();
        // ICMP6_FILTER (netinet/icmp6.h) is option 1 of IPPROTO_ICMPV6.
        crate::sock::setsockopt_bytes(sock.raw_fd(), libc::IPPROTO_ICMPV6, 1, &bytes)?;
        sock.set_int(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        sock.set_int(libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        Ok(Self {
            sock,
            joined: Default::default(),
        })
    }

    /// Joins `anycast` on `ifindex` (once; the membership ends with the socket).
    pub fn join(&self, ifindex: u32, anycast: Ipv6Addr) -> anyhow::Result<()> {
        let mut joined = self
            .joined
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        if joined.contains(&(ifindex, anycast)) {
            return Ok(());
        }
        crate::sock::join_anycast(self.sock.raw_fd(), anycast, ifindex)?;
        joined.insert((ifindex, anycast));
        Ok(())
    }

    pub async fn recv(&self) -> anyhow::Result<crate::sock::Received> {
        self.sock.recv().await
    }

    pub fn send(&self, data: &[u8], dst: Ipv6Addr, src: Ipv6Addr) -> std::io::Result<usize> {
        self.sock.send_to(data, dst, Some(src), 0)
    }
}

/// Received ICMPv6 waiting for the event loop, at most.
pub const QUEUE: usize = 1024;

/// Reads the socket into a bounded queue (what does not fit is dropped and counted).
pub fn spawn_reader(
    sock: std::sync::Arc<Icmpv6Socket>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (
    tokio::sync::mpsc::Receiver<crate::sock::Received>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        loop {
            match sock.recv().await {
                Ok(r) => match tx.try_send(r) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                },
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "receiving ICMPv6 failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    (rx, task)
}

/// Counters of the home agent's ICMPv6 (`hagent stats`: `home_agent.dhaad`, the name it has
/// had since DHAAD was all it did).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct IcmpStats {
    pub requests: u64,
    pub replies: u64,
    pub rate_limited: u64,
    pub not_for_a_home_link: u64,
    pub advertisements_learned: u64,
    pub invalid: u64,
    /// ICMPv6 errors about our tunnel packets relayed to the inner source (RFC 2473 §8).
    pub tunnel_errors_relayed: u64,
    /// Errors not about a tunnel of ours to a bound care-of address, or over the budget.
    pub tunnel_errors_ignored: u64,
    /// Mobile Prefix Solicitations answered with an advertisement (RFC 6275 §10.6).
    pub prefix_advertisements: u64,
    /// Solicitations from no bound home address, to no address of ours, or over the budget.
    pub prefix_solicitations_ignored: u64,
}

/// Messages sent per second at most, whatever asked for them (each is bigger than what asked:
/// an amplifier must stay small).
pub const MAX_REPLIES_PER_SECOND: u32 = 100;
