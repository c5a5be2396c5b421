//! The slow path for packets the XDP program cannot forward itself: inner packets of at most
//! 1280 bytes whose tunnel packet exceeds the path MTU must be encapsulated and the *outer*
//! packet fragmented (RFC 2473 §7.1). XDP cannot fragment; the kernel can, for packets it
//! originates. So the program hands the inner packet over a ring buffer and we send it
//! through a raw IPv6 socket of protocol 41: the kernel builds the outer header from the
//! binding's addresses and fragments it to the path MTU.

use std::{
    mem::size_of,
    net::Ipv6Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, RingBuf};
use ha_common::abi::{PUNT_REASON_FRAGMENT, PuntRecord};
use tokio::io::unix::AsyncFd;

/// A raw socket that sends IPv6-in-IPv6 packets, letting the kernel fragment them.
pub struct TunnelSender {
    fd: OwnedFd,
}

impl TunnelSender {
    pub fn new(hop_limit: u8) -> anyhow::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IPV6,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error())
                .context("opening the raw IPv6-in-IPv6 socket");
        }
        // SAFETY: `raw` is a fresh, valid fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let hops = hop_limit as libc::c_int;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &hops)?;
        // Send-only: a filter that accepts nothing keeps every received tunnel packet from
        // queueing on this socket.
        let reject = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: reject.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        Ok(Self { fd })
    }

    /// Sends `inner` tunnelled from `src` to `dst`.
    pub fn send(&self, src: Ipv6Addr, dst: Ipv6Addr, inner: &[u8]) -> std::io::Result<()> {
        // SAFETY: zeroed sockaddr_in6/msghdr are valid initial values; every pointer below
        // refers to locals that outlive the sendmsg call.
        unsafe {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_addr.s6_addr = dst.octets();
            let mut iov = libc::iovec {
                iov_base: inner.as_ptr() as *mut libc::c_void,
                iov_len: inner.len(),
            };
            let mut pktinfo: libc::in6_pktinfo = std::mem::zeroed();
            pktinfo.ipi6_addr.s6_addr = src.octets();
            let space = libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize;
            // u64s: control messages must be aligned for cmsghdr.
            let mut cbuf = vec![0u64; space.div_ceil(8)];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut sa as *mut _ as *mut libc::c_void;
            msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
            (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in6_pktinfo, pktinfo);
            if libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> anyhow::Result<()> {
    // SAFETY: `value` points to a T of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as u32,
        )
    };
    if r != 0 {
        bail!(
            "setsockopt({level}, {name}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Statistics of the slow path.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PuntStats {
    pub fragmented_sent: u64,
    pub send_errors: u64,
    pub malformed: u64,
}

/// Reads the punt ring buffer until the task is dropped, sending each packet.
pub async fn serve(
    ring: RingBuf<MapData>,
    sender: TunnelSender,
    stats: std::sync::Arc<std::sync::Mutex<PuntStats>>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as
    // the AsyncFd (which owns the ring buffer) lives.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the punt ring buffer: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            let outcome = handle(&item, &sender);
            let mut s = stats.lock().expect("punt stats lock");
            match outcome {
                Ok(()) => s.fragmented_sent += 1,
                Err(Handled::Malformed) => s.malformed += 1,
                Err(Handled::Send(e)) => {
                    s.send_errors += 1;
                    tracing::debug!(error = %e, "sending a fragmented tunnel packet failed");
                }
            }
        }
        guard.clear_ready();
    }
}

enum Handled {
    Malformed,
    Send(std::io::Error),
}

fn handle(item: &[u8], sender: &TunnelSender) -> Result<(), Handled> {
    if item.len() < size_of::<PuntRecord>() {
        return Err(Handled::Malformed);
    }
    // SAFETY: the program writes whole PuntRecords; the length was checked.
    let rec: PuntRecord = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PuntRecord) };
    let len = rec.len as usize;
    if rec.reason != PUNT_REASON_FRAGMENT || len < 40 || len > rec.packet.len() {
        return Err(Handled::Malformed);
    }
    sender
        .send(
            Ipv6Addr::from(rec.binding.local),
            Ipv6Addr::from(rec.binding.remote),
            &rec.packet[..len],
        )
        .map_err(Handled::Send)
}
