//! Dynamic Home Agent Address Discovery, the home agent's side (RFC 6275 §10.5): the
//! home-agents list of each home link — this node's own addresses, and the home agents other
//! routers advertise (Router Advertisements with the H flag, their Home Agent Information
//! option and an R-flag prefix holding their global address, §10.5.1) — and the reply to a
//! DHAAD Request sent to the link's home-agents anycast address (RFC 2526): the addresses in
//! decreasing preference, shuffled among equal preferences, as many as fit 1280 bytes. Pure:
//! the home agent feeds it received ICMPv6 and sends what it returns.

use std::{
    collections::HashMap,
    net::Ipv6Addr,
    time::{Duration, Instant},
};

/// ICMPv6 types (RFC 6275 §6.5, §6.6).
pub const DHAAD_REQUEST: u8 = 144;
pub const DHAAD_REPLY: u8 = 145;
/// Router Advertisement (RFC 4861 §4.2).
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// RA flags byte: Home Agent (RFC 6275 §7.1).
pub const RA_FLAG_H: u8 = 0x20;
/// Prefix Information option, and its R flag: the prefix field holds the router's address.
const OPT_PREFIX_INFO: u8 = 3;
const PIO_FLAG_R: u8 = 0x20;
/// Home Agent Information option (RFC 6275 §7.4).
const OPT_HA_INFO: u8 = 8;
/// The Mobile IPv6 home-agents anycast ID (RFC 2526 §3).
const HOME_AGENTS_ANYCAST_ID: u8 = 0x7e;
/// A reply fits the IPv6 minimum MTU: 1280 − IPv6 header − the 8-byte ICMPv6 header.
pub const MAX_REPLY_ADDRESSES: usize = (1280 - 40 - 8) / 16;
/// Home agents remembered per home link (learned from advertisements); more are ignored.
pub const MAX_LEARNED_PER_LINK: usize = 256;

/// The home-agents anycast address of `prefix/len` (RFC 2526 §2): for a /64 the interface ID
/// `fdff:ffff:ffff:fffe` (EUI-64 format, the u bit clear); otherwise the host bits all ones
/// but the last seven, which are the anycast ID. None when the prefix leaves no room for it.
pub fn anycast_address(prefix: Ipv6Addr, len: u8) -> Option<Ipv6Addr> {
    if len > 120 {
        return None;
    }
    let p = u128::from(prefix);
    let net = if len == 0 {
        0
    } else {
        p & (!0u128 << (128 - len))
    };
    let host_mask = if len == 0 {
        !0u128
    } else {
        !(!0u128 << (128 - len))
    };
    let id = u128::from(HOME_AGENTS_ANYCAST_ID);
    let host = if len == 64 {
        0xfdff_ffff_ffff_ff80 | id
    } else {
        (host_mask & !0x7f) | id
    };
    Some(Ipv6Addr::from(net | (host & host_mask)))
}

/// The identifier of a DHAAD Request (`icmp`: the ICMPv6 message), None if it is not one.
pub fn parse_request(icmp: &[u8]) -> Option<u16> {
    if icmp.len() < 8 || icmp[0] != DHAAD_REQUEST || icmp[1] != 0 {
        return None;
    }
    Some(u16::from_be_bytes([icmp[4], icmp[5]]))
}

/// A DHAAD Reply (checksum left zero: the raw ICMPv6 socket fills it in).
pub fn reply(identifier: u16, addresses: &[Ipv6Addr]) -> Vec<u8> {
    let n = addresses.len().min(MAX_REPLY_ADDRESSES);
    let mut v = Vec::with_capacity(8 + 16 * n);
    v.extend_from_slice(&[DHAAD_REPLY, 0, 0, 0]);
    v.extend_from_slice(&identifier.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    for a in &addresses[..n] {
        v.extend_from_slice(&a.octets());
    }
    v
}

/// What a Router Advertisement says about its sender as a home agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertised {
    /// The global address of the router (R-flag prefix options), if it gave one.
    pub addresses: Vec<Ipv6Addr>,
    pub preference: i16,
    /// 0: no longer a home agent.
    pub lifetime: Duration,
}

/// Parses a Router Advertisement (`icmp`, after the hop-limit-255 check) for the home agent
/// it announces; None when it is not a valid RA or not from a home agent (H clear).
pub fn parse_ra(icmp: &[u8]) -> Option<Advertised> {
    if icmp.len() < 16 || icmp[0] != ROUTER_ADVERTISEMENT || icmp[1] != 0 {
        return None;
    }
    if icmp[5] & RA_FLAG_H == 0 {
        return None;
    }
    let router_lifetime = u16::from_be_bytes([icmp[6], icmp[7]]);
    let mut ha = Advertised {
        addresses: Vec::new(),
        preference: 0,
        lifetime: Duration::from_secs(router_lifetime.into()),
    };
    let mut opts = &icmp[16..];
    while opts.len() >= 2 {
        let (t, units) = (opts[0], usize::from(opts[1]));
        // RFC 4861 §4.6: a zero length is invalid and ends the message.
        if units == 0 || units * 8 > opts.len() {
            return None;
        }
        let o = &opts[..units * 8];
        match t {
            OPT_PREFIX_INFO if o.len() == 32 && o[3] & PIO_FLAG_R != 0 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&o[16..32]);
                let a = Ipv6Addr::from(a);
                if crate::config::is_global_unicast(&a) && ha.addresses.len() < 8 {
                    ha.addresses.push(a);
                }
            }
            OPT_HA_INFO if o.len() == 8 => {
                ha.preference = i16::from_be_bytes([o[4], o[5]]);
                // §7.4: the HA lifetime; 0 is not allowed in the option (MUST NOT): ignore.
                let l = u16::from_be_bytes([o[6], o[7]]);
                if l != 0 {
                    ha.lifetime = Duration::from_secs(l.into());
                }
            }
            _ => {}
        }
        opts = &opts[units * 8..];
    }
    Some(ha)
}

#[derive(Clone, Debug)]
struct Entry {
    address: Ipv6Addr,
    preference: i16,
    /// None: this node's own address.
    expires: Option<Instant>,
}

/// The home-agents list of every home link.
#[derive(Debug, Default)]
pub struct HomeAgents {
    links: HashMap<u32, Vec<Entry>>,
}

impl HomeAgents {
    /// This node's own addresses on home link `ifindex`, with the configured preference.
    pub fn set_own(&mut self, ifindex: u32, addresses: &[Ipv6Addr], preference: i16) {
        let list = self.links.entry(ifindex).or_default();
        list.retain(|e| e.expires.is_some() && !addresses.contains(&e.address));
        for &address in addresses {
            list.push(Entry {
                address,
                preference,
                expires: None,
            });
        }
    }

    /// A home agent's advertisement on `ifindex` (§10.5.1): adds, refreshes or (lifetime 0)
    /// removes its addresses. Our own addresses are not overridden by what others say.
    pub fn learn(&mut self, ifindex: u32, ad: &Advertised, now: Instant) {
        let Some(list) = self.links.get_mut(&ifindex) else {
            return; // not a home link
        };
        for &a in &ad.addresses {
            if list.iter().any(|e| e.address == a && e.expires.is_none()) {
                continue;
            }
            list.retain(|e| e.address != a);
            if ad.lifetime.is_zero() {
                continue;
            }
            if list.iter().filter(|e| e.expires.is_some()).count() >= MAX_LEARNED_PER_LINK {
                continue;
            }
            list.push(Entry {
                address: a,
                preference: ad.preference,
                expires: Some(now + ad.lifetime),
            });
        }
    }

    /// The addresses a DHAAD Reply for `ifindex` lists at `now`: decreasing preference, each
    /// group of equal preference in an order `shuffle` picks (RFC 6275 §10.5.1: spreads mobile
    /// nodes over equal home agents), at most [`MAX_REPLY_ADDRESSES`].
    pub fn reply_addresses(
        &mut self,
        ifindex: u32,
        now: Instant,
        mut shuffle: impl FnMut(&mut [Ipv6Addr]),
    ) -> Vec<Ipv6Addr> {
        let Some(list) = self.links.get_mut(&ifindex) else {
            return Vec::new();
        };
        list.retain(|e| e.expires.is_none_or(|t| t > now));
        let mut prefs: Vec<i16> = list.iter().map(|e| e.preference).collect();
        prefs.sort_unstable_by(|a, b| b.cmp(a));
        prefs.dedup();
        let mut out = Vec::new();
        for p in prefs {
            let mut group: Vec<Ipv6Addr> = list
                .iter()
                .filter(|e| e.preference == p)
                .map(|e| e.address)
                .collect();
            shuffle(&mut group);
            out.extend(group);
        }
        out.truncate(MAX_REPLY_ADDRESSES);
        out
    }
}

/// A Fisher–Yates shuffle (not for secrets: it only spreads mobile nodes over equal home
/// agents).
pub struct Shuffler(crate::rng::XorShift);

impl Shuffler {
    pub fn new(seed: u64) -> Self {
        Self(crate::rng::XorShift(seed | 1))
    }

    pub fn shuffle(&mut self, v: &mut [Ipv6Addr]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.0.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn home_agents_anycast_addresses_rfc2526() {
        assert_eq!(
            anycast_address(a("2001:db8:bee5::"), 64),
            Some(a("2001:db8:bee5::fdff:ffff:ffff:fffe"))
        );
        // Not /64: host bits all ones, the last seven the ID 0x7e.
        assert_eq!(
            anycast_address(a("2001:db8:bee5::"), 112),
            Some(a("2001:db8:bee5::fffe"))
        );
        assert_eq!(
            anycast_address(a("2001:db8:bee5::"), 48),
            Some(a("2001:db8:bee5:ffff:ffff:ffff:ffff:fffe"))
        );
        assert_eq!(anycast_address(a("2001:db8::"), 126), None);
    }

    #[test]
    fn request_and_reply_rfc6275_6_5_6_6() {
        assert_eq!(
            parse_request(&[144, 0, 0, 0, 0x12, 0x34, 0, 0]),
            Some(0x1234)
        );
        assert_eq!(parse_request(&[144, 1, 0, 0, 0x12, 0x34, 0, 0]), None);
        assert_eq!(parse_request(&[144, 0, 0, 0, 0x12]), None);
        let r = reply(0x1234, &[a("2001:db8:bee5::1")]);
        assert_eq!(&r[..8], &[145, 0, 0, 0, 0x12, 0x34, 0, 0]);
        assert_eq!(&r[8..], &a("2001:db8:bee5::1").octets());
        let many: Vec<Ipv6Addr> = (0..100u128).map(|i| Ipv6Addr::from(i + 1)).collect();
        let r = reply(1, &many);
        assert_eq!(r.len(), 8 + 16 * MAX_REPLY_ADDRESSES);
        assert!(40 + r.len() <= 1280);
    }

    /// An RA with the H flag, an R-flag prefix with the router's address, and a Home Agent
    /// Information option (preference, lifetime).
    fn ra(
        h: bool,
        router_lifetime: u16,
        address: Ipv6Addr,
        ha_info: Option<(i16, u16)>,
    ) -> Vec<u8> {
        let mut v = vec![134, 0, 0, 0, 64, if h { RA_FLAG_H } else { 0 }];
        v.extend_from_slice(&router_lifetime.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        let mut pio = vec![3, 4, 64, 0xc0 | PIO_FLAG_R];
        pio.extend_from_slice(&[0, 0, 0x1c, 0x20, 0, 0, 0x0e, 0x10, 0, 0, 0, 0]);
        pio.extend_from_slice(&address.octets());
        v.extend(pio);
        if let Some((p, l)) = ha_info {
            v.extend_from_slice(&[8, 1, 0, 0]);
            v.extend_from_slice(&p.to_be_bytes());
            v.extend_from_slice(&l.to_be_bytes());
        }
        v
    }

    #[test]
    fn router_advertisements_announce_home_agents_rfc6275_7_1_7_4() {
        let other = a("2001:db8:bee5::2");
        assert_eq!(
            parse_ra(&ra(true, 1800, other, Some((10, 600)))),
            Some(Advertised {
                addresses: vec![other],
                preference: 10,
                lifetime: Duration::from_secs(600)
            })
        );
        // Without the option: preference 0, the router lifetime.
        assert_eq!(
            parse_ra(&ra(true, 1800, other, None)).unwrap().lifetime,
            Duration::from_secs(1800)
        );
        // Not a home agent, or malformed (zero-length option).
        assert_eq!(parse_ra(&ra(false, 1800, other, None)), None);
        let mut bad = ra(true, 1800, other, None);
        bad.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_ra(&bad), None);
    }

    #[test]
    fn the_list_by_preference_shuffled_within_equal_ones_rfc6275_10_5_1() {
        let t0 = Instant::now();
        let mut l = HomeAgents::default();
        let me = a("2001:db8:bee5::c001:babe");
        l.set_own(2, &[me], 0);
        let high = a("2001:db8:bee5::10");
        let (eq1, eq2) = (a("2001:db8:bee5::20"), a("2001:db8:bee5::21"));
        let low = a("2001:db8:bee5::30");
        for (addr, pref) in [(high, 50), (eq1, 0), (eq2, 0), (low, -5)] {
            l.learn(
                2,
                &Advertised {
                    addresses: vec![addr],
                    preference: pref,
                    lifetime: Duration::from_secs(100),
                },
                t0,
            );
        }
        let keep = |_: &mut [Ipv6Addr]| {};
        assert_eq!(
            l.reply_addresses(2, t0, keep),
            vec![high, me, eq1, eq2, low]
        );
        let reverse = |g: &mut [Ipv6Addr]| g.reverse();
        assert_eq!(
            l.reply_addresses(2, t0, reverse),
            vec![high, eq2, eq1, me, low]
        );
        // Every order of the equal group appears over many shuffles.
        let mut s = Shuffler::new(7);
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            firsts.insert(l.reply_addresses(2, t0, |g| s.shuffle(g))[1]);
        }
        assert_eq!(firsts.len(), 3, "{firsts:?}");
        // Lifetime 0 withdraws; expiry removes; our own address never goes.
        l.learn(
            2,
            &Advertised {
                addresses: vec![high],
                preference: 50,
                lifetime: Duration::ZERO,
            },
            t0,
        );
        assert!(!l.reply_addresses(2, t0, keep).contains(&high));
        assert_eq!(
            l.reply_addresses(2, t0 + Duration::from_secs(101), keep),
            vec![me]
        );
        // Another link, and an address claiming to be ours, change nothing.
        l.learn(
            3,
            &Advertised {
                addresses: vec![high],
                preference: 99,
                lifetime: Duration::from_secs(100),
            },
            t0,
        );
        assert!(l.reply_addresses(3, t0, keep).is_empty());
        l.learn(
            2,
            &Advertised {
                addresses: vec![me],
                preference: 99,
                lifetime: Duration::ZERO,
            },
            t0,
        );
        assert_eq!(l.reply_addresses(2, t0, keep), vec![me]);
    }
}
