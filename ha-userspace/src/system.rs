//! Preconditions the host must meet before the daemon touches the kernel, each checked with a
//! message that says what is wrong and what to do.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Loading BPF programs and attaching XDP needs CAP_BPF/CAP_NET_ADMIN; we simply require root.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "hagent must run as root to load eBPF programs and attach XDP (running as uid {euid}); \
             try `sudo hagent ...`"
        );
    }
    Ok(())
}

/// The programs use CO-RE-free BTF-described maps; the kernel must expose its BTF.
pub fn require_btf() -> anyhow::Result<()> {
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        bail!(
            "the kernel exposes no BTF ({} is missing): hagent needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y",
            btf.display()
        );
    }
    Ok(())
}

/// The interface index of `name`, or an error naming the interface.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name)
        .with_context(|| format!("interface name {name:?} contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("interface {name:?} does not exist");
    }
    Ok(idx)
}

/// The MAC address of an interface (from sysfs).
pub fn mac_address(name: &str) -> anyhow::Result<[u8; 6]> {
    let path = format!("/sys/class/net/{name}/address");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<_> = text.trim().split(':').collect();
    if parts.len() != 6 {
        bail!("{name} has no Ethernet address ({:?})", text.trim());
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {:?}", text.trim()))?;
    }
    Ok(mac)
}

/// The MTU of an interface (from sysfs).
pub fn mtu(name: &str) -> anyhow::Result<u32> {
    let path = format!("/sys/class/net/{name}/mtu");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(text.trim().parse()?)
}

/// Whether allmulti is on for interface `name` (`IFF_ALLMULTI` in its sysfs flags).
pub fn allmulti(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 0x200 != 0)
}

/// The driver of interface `name` (`ETHTOOL_GDRVINFO`, what `ethtool -i` prints), if it
/// answers.
pub fn driver(name: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a datagram socket for the ioctl, closed below; SIOCETHTOOL writes at most
    // `DrvInfo` (196 bytes, the kernel's `struct ethtool_drvinfo`) through `data`.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let r = libc::ioctl(fd, libc::SIOCETHTOOL, &mut req);
        libc::close(fd);
        if r != 0 {
            return None;
        }
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// An IPv6 address configured on an interface, with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub addr: std::net::Ipv6Addr,
    pub prefix_len: u8,
}

impl InterfaceAddress {
    /// Whether `other` is inside this address's prefix.
    pub fn covers(&self, other: &std::net::Ipv6Addr) -> bool {
        prefix_contains(self.addr, self.prefix_len, *other)
    }
}

/// The network bits of a `/len` prefix (`len` above 128 counts as 128).
pub fn prefix_mask(len: u8) -> u128 {
    match len.min(128) {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

/// `addr` with the bits after the first `len` cleared: the network of `addr/len`.
pub fn network(addr: std::net::Ipv6Addr, len: u8) -> std::net::Ipv6Addr {
    (u128::from(addr) & prefix_mask(len)).into()
}

/// The bits of `addr` after the first `len`.
pub fn host_bits(addr: std::net::Ipv6Addr, len: u8) -> u128 {
    u128::from(addr) & !prefix_mask(len)
}

/// Whether `addr` lies in `prefix/len`.
pub fn prefix_contains(prefix: std::net::Ipv6Addr, len: u8, addr: std::net::Ipv6Addr) -> bool {
    let mask = prefix_mask(len);
    u128::from(prefix) & mask == u128::from(addr) & mask
}

/// The IPv6 addresses configured on `name` (getifaddrs).
pub fn ipv6_addresses(name: &str) -> anyhow::Result<Vec<InterfaceAddress>> {
    Ok(all_ipv6_addresses()?
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, a)| a)
        .collect())
}

/// Every IPv6 address of this node (in its network namespace), with its interface's name.
pub fn all_ipv6_addresses() -> anyhow::Result<Vec<(String, InterfaceAddress)>> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below; we only read it.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return Err(std::io::Error::last_os_error()).context("getifaddrs");
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
                continue;
            }
            if (*ifa.ifa_addr).sa_family as i32 != libc::AF_INET6 {
                continue;
            }
            let ifname = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .to_string();
            let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
            let nm = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
            let prefix_len = nm
                .sin6_addr
                .s6_addr
                .iter()
                .map(|b| b.count_ones())
                .sum::<u32>() as u8;
            out.push((
                ifname,
                InterfaceAddress {
                    addr: std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr),
                    prefix_len,
                },
            ));
        }
        libc::freeifaddrs(ifap);
    }
    Ok(out)
}

/// Writes a sysctl, given as path components (an interface name may contain dots).
pub fn set_sysctl(key: &[&str], value: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{}", key.join("/"));
    std::fs::write(&path, value).with_context(|| format!("setting {} = {value}", key.join(".")))
}

/// Reads a sysctl, given as path components.
pub fn sysctl(key: &[&str]) -> anyhow::Result<String> {
    let path = format!("/proc/sys/{}", key.join("/"));
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", key.join(".")))?
        .trim()
        .to_string())
}

/// `CLOCK_BOOTTIME` in nanoseconds: monotonic, counts suspend, and the same for every process —
/// so a deadline written by one daemon means the same to the next.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p: std::net::Ipv6Addr = "2001:db8:bee5::".parse().unwrap();
        assert!(prefix_contains(
            p,
            64,
            "2001:db8:bee5::dead:face".parse().unwrap()
        ));
        assert!(!prefix_contains(
            p,
            64,
            "2001:db8:f00d::dead:face".parse().unwrap()
        ));
        assert!(prefix_contains(p, 0, "::1".parse().unwrap()));
        assert!(prefix_contains(p, 128, p));
    }
}
