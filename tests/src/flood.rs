//! A Binding Update generator, for the flood tests and `cargo xtask bench signalling`: BUs
//! from a care-of address with a Home Address option and a valid checksum, sent whole on an
//! IPPROTO_RAW socket, and BAs counted on an AF_PACKET socket (the generator's kernel cannot
//! take a type 2 routing header). Every loop is bounded in count and in time.

use std::{
    net::Ipv6Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use ha_common::mh;

use crate::Netns;

/// A Binding Update from `coa` to `ha` for `hoa`.
pub fn bu_packet(
    coa: Ipv6Addr,
    ha: Ipv6Addr,
    hoa: Ipv6Addr,
    seq: u16,
    lifetime_units: u16,
) -> Vec<u8> {
    hagent::mobility::bu_packet(hoa, coa, ha, seq, lifetime_units).expect("a BU fits")
}

/// Sockets of a generator, opened in the namespace of the calling thread.
pub struct Gen {
    tx: OwnedFd,
    rx: Option<OwnedFd>,
    ha: Ipv6Addr,
}

impl Gen {
    /// Sends to `ha`; with `rx_ifindex`, counts BAs arriving on that interface.
    pub fn new(ha: Ipv6Addr, rx_ifindex: Option<u32>) -> anyhow::Result<Self> {
        // SAFETY: plain socket calls; fds owned immediately.
        unsafe {
            let tx = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_RAW);
            if tx < 0 {
                bail!("raw socket: {}", std::io::Error::last_os_error());
            }
            let tx = OwnedFd::from_raw_fd(tx);
            let big: i32 = 8 << 20;
            libc::setsockopt(
                tx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                &big as *const i32 as *const libc::c_void,
                4,
            );
            let rx = match rx_ifindex {
                None => None,
                Some(ifindex) => {
                    let rx = libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                        (libc::ETH_P_IPV6 as u16).to_be() as i32,
                    );
                    if rx < 0 {
                        bail!("packet socket: {}", std::io::Error::last_os_error());
                    }
                    let rx = OwnedFd::from_raw_fd(rx);
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    sll.sll_family = libc::AF_PACKET as u16;
                    sll.sll_protocol = (libc::ETH_P_IPV6 as u16).to_be();
                    sll.sll_ifindex = ifindex as i32;
                    if libc::bind(
                        rx.as_raw_fd(),
                        &sll as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    ) < 0
                    {
                        bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
                    }
                    let big: i32 = 64 << 20;
                    libc::setsockopt(
                        rx.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUFFORCE,
                        &big as *const i32 as *const libc::c_void,
                        4,
                    );
                    Some(rx)
                }
            };
            Ok(Self { tx, rx, ha })
        }
    }

    /// Sends one packet; false if the kernel refused it (its queue is full).
    pub fn send(&self, p: &[u8]) -> bool {
        // SAFETY: a valid sockaddr_in6 and buffer for the call.
        unsafe {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_addr.s6_addr = self.ha.octets();
            libc::sendto(
                self.tx.as_raw_fd(),
                p.as_ptr() as *const libc::c_void,
                p.len(),
                libc::MSG_DONTWAIT,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            ) >= 0
        }
    }

    /// Drains received BAs: (HoA from the RH2, status, sequence number).
    pub fn drain(&self, out: &mut Vec<(Ipv6Addr, u8, u16)>) {
        let Some(rx) = &self.rx else {
            return;
        };
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: buffer valid for its length.
            let n = unsafe {
                libc::recv(
                    rx.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            let p = &buf[..n as usize];
            // IPv6 → RH2 (43) → MH BA.
            if p.len() >= 40 + 24 + 12
                && p[6] == 43
                && p[40 + 2] == 2
                && p[64 + 2] == mh::MH_TYPE_BA
            {
                let hoa: [u8; 16] = p[48..64].try_into().expect("16 bytes");
                out.push((
                    Ipv6Addr::from(hoa),
                    p[64 + 6],
                    u16::from_be_bytes([p[64 + 8], p[64 + 9]]),
                ));
            }
        }
    }
}

/// A running flood of BUs for random home addresses in `prefix`/64 from `coa`.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Flood {
    /// Starts it in `ns`; it ends after `duration` or `max` BUs, whichever comes first.
    pub fn start(
        ns: &Netns,
        coa: Ipv6Addr,
        ha: Ipv6Addr,
        prefix: Ipv6Addr,
        duration: Duration,
        max: u64,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = ns.spawn_thread(move || -> anyhow::Result<()> {
            let g = Gen::new(ha, None)?;
            let base = u128::from(prefix) & !u128::from(u64::MAX);
            let end = Instant::now() + duration;
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
            for i in 0..max {
                if s.load(Ordering::Relaxed) || (i % 256 == 0 && Instant::now() > end) {
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Random interface identifiers, never the subnet-router address.
                let hoa = Ipv6Addr::from(base | u128::from(x | 0x100));
                if g.send(&bu_packet(coa, ha, hoa, 1, 100)) {
                    n.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Ok(())
        })?;
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// BUs sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops it and returns how many BUs it sent.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r?,
                Err(_) => bail!("the flood thread panicked"),
            }
        }
        Ok(self.sent())
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
