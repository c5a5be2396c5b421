//! Thin, checked wrappers around the raw IPv6 sockets the daemon needs (libc; no helper crate
//! does ancillary data the way signalling needs it).

use std::{
    mem::size_of,
    net::Ipv6Addr,
    os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd},
};

use anyhow::Context as _;
use tokio::io::unix::AsyncFd;

/// A raw IPv6 socket registered with tokio.
pub struct RawSocket {
    fd: AsyncFd<OwnedFd>,
}

/// One received datagram with the ancillary data signalling needs.
#[derive(Clone, Debug)]
pub struct Received {
    pub data: Vec<u8>,
    /// Source address (after the data plane swapped in the HoA, if there was a HAO).
    pub src: Ipv6Addr,
    /// Destination address (IPV6_PKTINFO).
    pub dst: Ipv6Addr,
    /// Arrival interface (IPV6_PKTINFO).
    pub ifindex: u32,
    /// Destination Options header, if any (IPV6_RECVDSTOPTS).
    pub dstopts: Option<Vec<u8>>,
    /// Hop limit (IPV6_RECVHOPLIMIT), if asked for.
    pub hop_limit: Option<u8>,
}

fn check(r: libc::c_int, what: &str) -> anyhow::Result<libc::c_int> {
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    Ok(r)
}

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> anyhow::Result<()> {
    // SAFETY: `value` is an int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            size_of::<i32>() as u32,
        )
    };
    check(r, "setsockopt").map(|_| ())
}

pub fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, value: &[u8]) -> anyhow::Result<()> {
    // SAFETY: `value` is a valid buffer of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr() as *const libc::c_void,
            value.len() as u32,
        )
    };
    check(r, "setsockopt").map(|_| ())
}

impl RawSocket {
    /// `socket(AF_INET6, SOCK_RAW, protocol)`, non-blocking.
    pub fn new(protocol: i32) -> anyhow::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw = check(
            unsafe {
                libc::socket(
                    libc::AF_INET6,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    protocol,
                )
            },
            "opening a raw IPv6 socket",
        )?;
        // SAFETY: `raw` is a fresh valid fd.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd stays open and unchanged for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering a raw socket: {e}"))?;
        Ok(Self { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    pub fn set_int(&self, level: i32, name: i32, value: i32) -> anyhow::Result<()> {
        setsockopt_int(self.raw_fd(), level, name, value)
    }

    /// Receives one datagram (waiting for it).
    pub async fn recv(&self) -> anyhow::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_one(fd.as_raw_fd())) {
                Ok(r) => return Ok(r?),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends `data` to `dst` (scope `ifindex` for link-local/multicast), optionally from `src`
    /// and out of `ifindex` (IPV6_PKTINFO).
    pub fn send_to(
        &self,
        data: &[u8],
        dst: Ipv6Addr,
        src: Option<Ipv6Addr>,
        ifindex: u32,
    ) -> std::io::Result<usize> {
        // SAFETY: zeroed C structs are valid; every pointer refers to locals that outlive the
        // sendmsg call.
        unsafe {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_addr.s6_addr = dst.octets();
            sa.sin6_scope_id = ifindex;
            let mut iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let space = libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize;
            // u64s: control messages must be aligned for cmsghdr.
            let mut cbuf = vec![0u64; space.div_ceil(8)];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut sa as *mut _ as *mut libc::c_void;
            msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if src.is_some() || ifindex != 0 {
                msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
                msg.msg_controllen = space;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
                let mut pi: libc::in6_pktinfo = std::mem::zeroed();
                if let Some(s) = src {
                    pi.ipi6_addr.s6_addr = s.octets();
                }
                pi.ipi6_ifindex = ifindex;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::in6_pktinfo, pi);
            }
            let n = libc::sendmsg(self.raw_fd(), &msg, 0);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(n as usize)
        }
    }
}

fn recv_one(fd: RawFd) -> std::io::Result<Received> {
    // One receive buffer per thread; each datagram is then copied into a Vec of exactly its
    // size, so a queue of N messages holds N small allocations, not N × 64 KiB.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 65536]);
    }
    BUF.with_borrow_mut(|buf| recv_into(fd, buf))
}

fn recv_into(fd: RawFd, data: &mut [u8]) -> std::io::Result<Received> {
    // u64s: control messages must be aligned for cmsghdr.
    let mut cbuf = [0u64; 128];
    // SAFETY: zeroed C structs are valid; buffers outlive the call; cmsg parsing stays within
    // msg_controllen as the CMSG_* macros guarantee.
    unsafe {
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut sa as *mut _ as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut r = Received {
            data: data[..n as usize].to_vec(),
            src: Ipv6Addr::from(sa.sin6_addr.s6_addr),
            dst: Ipv6Addr::UNSPECIFIED,
            ifindex: 0,
            dstopts: None,
            hop_limit: None,
        };
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = std::ptr::read_unaligned(cmsg);
            let payload = libc::CMSG_DATA(cmsg);
            let len = c.cmsg_len as usize - (payload as usize - cmsg as usize);
            if c.cmsg_level == libc::IPPROTO_IPV6 {
                match c.cmsg_type {
                    libc::IPV6_PKTINFO if len >= size_of::<libc::in6_pktinfo>() => {
                        let pi = std::ptr::read_unaligned(payload as *const libc::in6_pktinfo);
                        r.dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                        r.ifindex = pi.ipi6_ifindex;
                    }
                    libc::IPV6_DSTOPTS => {
                        r.dstopts = Some(std::slice::from_raw_parts(payload, len).to_vec());
                    }
                    libc::IPV6_HOPLIMIT if len >= 4 => {
                        r.hop_limit = Some(std::ptr::read_unaligned(payload as *const i32) as u8);
                    }
                    _ => {}
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(r)
    }
}

/// Joins or leaves a multicast group on an interface.
pub fn multicast_membership(
    fd: RawFd,
    group: Ipv6Addr,
    ifindex: u32,
    join: bool,
) -> anyhow::Result<()> {
    let option = if join {
        libc::IPV6_ADD_MEMBERSHIP
    } else {
        libc::IPV6_DROP_MEMBERSHIP
    };
    set_mreq(fd, option, group, ifindex).map_err(|e| {
        anyhow::anyhow!(
            "{} multicast group {group}: {e}",
            if join { "joining" } else { "leaving" }
        )
    })
}

/// Joins an anycast address on an interface (the membership ends with the socket): the
/// kernel then answers Neighbor Solicitations for it and delivers packets sent to it.
pub fn join_anycast(fd: RawFd, anycast: Ipv6Addr, ifindex: u32) -> anyhow::Result<()> {
    set_mreq(fd, libc::IPV6_JOIN_ANYCAST, anycast, ifindex)
        .map_err(|e| anyhow::anyhow!("joining the anycast address {anycast}: {e}"))
}

/// An `IPPROTO_IPV6` option whose value is a `struct ipv6_mreq`.
fn set_mreq(fd: RawFd, option: i32, addr: Ipv6Addr, ifindex: u32) -> std::io::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    // SAFETY: a valid ipv6_mreq of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            option,
            &mreq as *const _ as *const libc::c_void,
            size_of::<libc::ipv6_mreq>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
