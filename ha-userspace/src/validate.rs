//! The trust boundary: every address and prefix that can widen what the home agent serves —
//! the fields of a Binding Update, of a static binding, of the configuration — is checked here,
//! once, before any state changes or any work is queued. Pure: the [`Scope`] (what this node
//! serves and owns) comes from the caller.
//!
//! What is refused, and why (RFC 6275 §9.5.1: a Binding Update whose home or care-of address
//! is not unicast routable is silently discarded; RFC 2526 and RFC 4291 §2.6.1 reserve subnet
//! anycast addresses; the rest keeps a binding from turning the home agent against itself).

use std::{fmt, net::Ipv6Addr};

use crate::system::{host_bits, prefix_contains};

/// The shortest prefix that may be served as a home prefix or bound as a mobile network prefix:
/// anything shorter (`::/0`, `2000::/3`, ...) would let one binding claim a large part of the
/// address space, the home agent's own routes included.
pub const MIN_PREFIX_LEN: u8 = 16;

/// A served home prefix and the home link it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HomePrefix {
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// The interface of the home link.
    pub ifindex: u32,
    /// The home agent address on that link (the tunnel's outer source, the BA's source).
    pub ha_address: Ipv6Addr,
}

/// What this node serves and owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// The home prefixes, most specific first is not required: the longest match wins.
    pub home_prefixes: Vec<HomePrefix>,
    /// Every address of this node (home agent addresses included): never a home or care-of
    /// address of a mobile node.
    pub local_addresses: Vec<Ipv6Addr>,
    /// The prefixes of this node's own addresses: a mobile network prefix must not overlap
    /// them.
    pub local_prefixes: Vec<(Ipv6Addr, u8)>,
}

/// Why an address is not acceptable where it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Unspecified,
    Loopback,
    Multicast,
    LinkLocal,
    /// fec0::/10, deprecated by RFC 3879.
    SiteLocal,
    /// ::ffff:0:0/96, an IPv4 address in IPv6 clothing.
    Ipv4Mapped,
    /// ::/96, the deprecated IPv4-compatible form (RFC 4291 §2.5.5.1).
    Ipv4Compatible,
    /// 100::/64, discard only (RFC 6666).
    DiscardOnly,
    /// One of this node's own addresses.
    Ours,
    /// The Subnet-Router anycast address of a home prefix (RFC 4291 §2.6.1).
    SubnetRouterAnycast,
    /// A reserved subnet anycast address of a home prefix (RFC 2526), the home-agents
    /// anycast address among them.
    SubnetAnycast,
    /// Inside a home prefix served here (a care-of address must be away from home).
    InsideHomePrefix,
    /// No served home prefix contains it.
    NotHome,
    /// A prefix shorter than [`MIN_PREFIX_LEN`], or longer than 128.
    PrefixLength,
    /// Host bits set after the prefix length.
    HostBits,
    /// Overlaps a served home prefix.
    OverlapsHomePrefix,
    /// Overlaps the prefix of one of this node's own addresses.
    OverlapsLocalPrefix,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Unspecified => "is the unspecified address",
            Problem::Loopback => "is the loopback address",
            Problem::Multicast => "is a multicast address",
            Problem::LinkLocal => "is a link-local address",
            Problem::SiteLocal => "is a (deprecated) site-local address",
            Problem::Ipv4Mapped => "is an IPv4-mapped address",
            Problem::Ipv4Compatible => "is an IPv4-compatible address",
            Problem::DiscardOnly => "is in the discard-only prefix 100::/64",
            Problem::Ours => "is one of this home agent's own addresses",
            Problem::SubnetRouterAnycast => {
                "is the Subnet-Router anycast address of its home prefix (RFC 4291 §2.6.1)"
            }
            Problem::SubnetAnycast => {
                "is a reserved subnet anycast address of its home prefix (RFC 2526), e.g. the \
                 home-agents anycast address"
            }
            Problem::InsideHomePrefix => "is inside a home prefix served here",
            Problem::NotHome => "is in no home prefix served here",
            Problem::PrefixLength => {
                return write!(f, "has a length outside {MIN_PREFIX_LEN}..=128");
            }
            Problem::HostBits => "has bits set after its length",
            Problem::OverlapsHomePrefix => "overlaps a home prefix served here",
            Problem::OverlapsLocalPrefix => "overlaps the prefix of one of this node's addresses",
        })
    }
}

/// Unicast and routable beyond the link: what RFC 6275 §9.5.1 asks of home and care-of
/// addresses. Documentation (2001:db8::/32) and unique local (fc00::/7) addresses are
/// accepted — labs and private networks use them.
pub fn unicast_routable(a: &Ipv6Addr) -> Result<(), Problem> {
    let o = a.octets();
    let v = u128::from(*a);
    if a.is_unspecified() {
        return Err(Problem::Unspecified);
    }
    if a.is_loopback() {
        return Err(Problem::Loopback);
    }
    if o[0] == 0xff {
        return Err(Problem::Multicast);
    }
    if o[0] == 0xfe && o[1] & 0xc0 == 0x80 {
        return Err(Problem::LinkLocal);
    }
    if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
        return Err(Problem::SiteLocal);
    }
    if v >> 32 == 0xffff {
        return Err(Problem::Ipv4Mapped);
    }
    if v >> 32 == 0 {
        return Err(Problem::Ipv4Compatible);
    }
    if v >> 64 == 0x0100_0000_0000_0000 {
        return Err(Problem::DiscardOnly);
    }
    Ok(())
}

/// Reserved anycast addresses of the subnet `len` (RFC 4291 §2.6.1, RFC 2526 §2).
fn subnet_anycast(a: &Ipv6Addr, len: u8) -> Result<(), Problem> {
    if len >= 127 {
        return Ok(());
    }
    let host = host_bits(*a, len);
    if host == 0 {
        return Err(Problem::SubnetRouterAnycast);
    }
    // RFC 2526: EUI-64 interface identifiers: fdff:ffff:ffff:ff80 + anycast ID (7 bits);
    // otherwise the 121 - n bits after the prefix are all ones, then the 7-bit anycast ID.
    let reserved = if len == 64 {
        host & !0x7f == 0xfdff_ffff_ffff_ff80
    } else if len < 121 {
        let ones = (u128::MAX >> len) & !0x7f;
        host & !0x7f == ones
    } else {
        false
    };
    if reserved {
        Err(Problem::SubnetAnycast)
    } else {
        Ok(())
    }
}

impl Scope {
    /// The home prefix (longest match) that contains `a`.
    pub fn home_prefix_of(&self, a: &Ipv6Addr) -> Option<&HomePrefix> {
        self.home_prefixes
            .iter()
            .filter(|p| prefix_contains(p.prefix, p.len, *a))
            .max_by_key(|p| p.len)
    }

    /// Whether `a` is one of this node's addresses.
    pub fn is_local(&self, a: &Ipv6Addr) -> bool {
        self.local_addresses.contains(a)
    }

    /// A home address: unicast routable, not ours, not a reserved anycast address of its home
    /// prefix — and inside a served home prefix (else [`Problem::NotHome`], which a home agent
    /// answers with status 132 rather than discarding).
    pub fn home_address(&self, a: &Ipv6Addr) -> Result<HomePrefix, Problem> {
        unicast_routable(a)?;
        if self.is_local(a) {
            return Err(Problem::Ours);
        }
        let home = *self.home_prefix_of(a).ok_or(Problem::NotHome)?;
        subnet_anycast(a, home.len)?;
        Ok(home)
    }

    /// A care-of address: unicast routable, not ours, not at home. (A care-of address equal
    /// to the home address is a deregistration, RFC 6275 §9.5.1; callers handle it first.)
    pub fn care_of_address(&self, a: &Ipv6Addr) -> Result<(), Problem> {
        unicast_routable(a)?;
        if self.is_local(a) {
            return Err(Problem::Ours);
        }
        if self.home_prefix_of(a).is_some() {
            return Err(Problem::InsideHomePrefix);
        }
        Ok(())
    }

    /// A mobile network prefix (NEMO, RFC 3963) to route to a mobile router: a unicast
    /// routable prefix of at least [`MIN_PREFIX_LEN`] bits with no host bits set, overlapping
    /// neither a home prefix nor the prefix of any of this node's addresses, and containing
    /// none of them.
    pub fn mobile_network_prefix(&self, prefix: &Ipv6Addr, len: u8) -> Result<(), Problem> {
        well_formed_prefix(prefix, len)?;
        let overlaps =
            |p: Ipv6Addr, l: u8| prefix_contains(p, l, *prefix) || prefix_contains(*prefix, len, p);
        if self.home_prefixes.iter().any(|h| overlaps(h.prefix, h.len)) {
            return Err(Problem::OverlapsHomePrefix);
        }
        if self.local_prefixes.iter().any(|&(p, l)| overlaps(p, l))
            || self
                .local_addresses
                .iter()
                .any(|a| prefix_contains(*prefix, len, *a))
        {
            return Err(Problem::OverlapsLocalPrefix);
        }
        Ok(())
    }
}

/// A prefix someone may serve or bind: unicast routable, at least [`MIN_PREFIX_LEN`] bits long,
/// no host bits. Checked for `HaServedPrefix`/`home_agent.home_prefixes` and for mobile network
/// prefixes.
pub fn well_formed_prefix(prefix: &Ipv6Addr, len: u8) -> Result<(), Problem> {
    if !(MIN_PREFIX_LEN..=128).contains(&len) {
        return Err(Problem::PrefixLength);
    }
    if host_bits(*prefix, len) != 0 {
        return Err(Problem::HostBits);
    }
    // The prefix's own address may be all zeros after the prefix (its subnet-router
    // address), which is fine for a prefix; check the class of its first address.
    match unicast_routable(prefix) {
        Err(Problem::Unspecified | Problem::Ipv4Compatible) => Err(Problem::Ipv4Compatible),
        r => r,
    }
}

/// A prefix with its problem, for messages: "mobile network prefix ::/0 has a length outside
/// 16..=128".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// What the value was given as ("home address", "care-of address", ...).
    pub field: &'static str,
    /// The value as given.
    pub value: String,
    pub problem: Problem,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.field, self.value, self.problem)
    }
}

impl std::error::Error for Rejected {}

/// What a static binding (`hagent binding add`) may install: the same rules as a Binding
/// Update, with errors for the operator. Returns the HoA's home prefix.
pub fn static_binding(
    scope: &Scope,
    hoa: &Ipv6Addr,
    coa: &Ipv6Addr,
    prefixes: &[(Ipv6Addr, u8)],
) -> Result<HomePrefix, Rejected> {
    let home = scope.home_address(hoa).map_err(|problem| Rejected {
        field: "home address",
        value: hoa.to_string(),
        problem,
    })?;
    scope.care_of_address(coa).map_err(|problem| Rejected {
        field: "care-of address",
        value: coa.to_string(),
        problem,
    })?;
    for &(p, l) in prefixes {
        scope
            .mobile_network_prefix(&p, l)
            .map_err(|problem| Rejected {
                field: "mobile network prefix",
                value: format!("{p}/{l}"),
                problem,
            })?;
    }
    Ok(home)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The seed lab: home prefix 2001:db8:bee5::/64 on ifindex 2, the HA at ::c001:babe.
    fn scope() -> Scope {
        Scope {
            home_prefixes: vec![HomePrefix {
                prefix: a("2001:db8:bee5::"),
                len: 64,
                ifindex: 2,
                ha_address: a("2001:db8:bee5::c001:babe"),
            }],
            local_addresses: vec![a("2001:db8:bee5::c001:babe"), a("2001:db8:ffff::1")],
            local_prefixes: vec![(a("2001:db8:bee5::"), 64), (a("2001:db8:ffff::"), 64)],
        }
    }

    #[test]
    fn a_home_address_is_unicast_routable_rfc6275_9_5_1() {
        let s = scope();
        assert_eq!(
            s.home_address(&a("2001:db8:bee5::dead:face"))
                .unwrap()
                .ifindex,
            2
        );
        for (addr, problem) in [
            ("::", Problem::Unspecified),
            ("::1", Problem::Loopback),
            ("ff02::1", Problem::Multicast),
            ("fe80::1", Problem::LinkLocal),
            ("::ffff:10.0.0.1", Problem::Ipv4Mapped),
        ] {
            assert_eq!(s.home_address(&a(addr)), Err(problem), "{addr}");
        }
    }

    #[test]
    fn the_home_agents_own_and_anycast_addresses_are_no_home_addresses_rfc2526() {
        let s = scope();
        assert_eq!(
            s.home_address(&a("2001:db8:bee5::c001:babe")),
            Err(Problem::Ours)
        );
        // The home-agents anycast address (anycast ID 0x7e) and the rest of RFC 2526's range.
        for x in [
            "2001:db8:bee5::fdff:ffff:ffff:fffe",
            "2001:db8:bee5::fdff:ffff:ffff:ff80",
        ] {
            assert_eq!(s.home_address(&a(x)), Err(Problem::SubnetAnycast), "{x}");
        }
        assert!(
            s.home_address(&a("2001:db8:bee5::fdff:ffff:ffff:ff7f"))
                .is_ok()
        );
        assert_eq!(
            s.home_address(&a("2001:db8:bee5::")),
            Err(Problem::SubnetRouterAnycast)
        );
        // Not EUI-64: a /56 home prefix reserves its last 128 subnet anycast addresses.
        let mut s56 = scope();
        s56.home_prefixes[0].len = 56;
        assert_eq!(
            s56.home_address(&a("2001:db8:bee5:ff:ffff:ffff:ffff:fffe")),
            Err(Problem::SubnetAnycast)
        );
        assert!(
            s56.home_address(&a("2001:db8:bee5:ff:ffff:ffff:ffff:ff7f"))
                .is_ok()
        );
    }

    #[test]
    fn outside_the_home_prefixes_is_not_home_rfc6275_10_3_1() {
        assert_eq!(
            scope().home_address(&a("2001:db8:cafe::77")),
            Err(Problem::NotHome)
        );
    }

    #[test]
    fn a_care_of_address_is_routable_and_away_from_home_rfc6275_9_5_1() {
        let s = scope();
        assert_eq!(s.care_of_address(&a("2001:db8:f00d::dead:face")), Ok(()));
        for (addr, problem) in [
            ("::", Problem::Unspecified),
            ("::1", Problem::Loopback),
            ("::ffff:10.0.0.1", Problem::Ipv4Mapped),
            ("ff0e::1", Problem::Multicast),
            ("fe80::1", Problem::LinkLocal),
            ("fec0::1", Problem::SiteLocal),
            ("100::1", Problem::DiscardOnly),
            ("::10.0.0.1", Problem::Ipv4Compatible),
            ("2001:db8:bee5::c001:babe", Problem::Ours),
            ("2001:db8:ffff::1", Problem::Ours),
            ("2001:db8:bee5::42", Problem::InsideHomePrefix),
        ] {
            assert_eq!(s.care_of_address(&a(addr)), Err(problem), "{addr}");
        }
        // Unique local and documentation addresses are fine.
        assert_eq!(s.care_of_address(&a("fd00::1")), Ok(()));
    }

    #[test]
    fn mobile_network_prefixes_never_cover_the_home_agents_own_rfc3963() {
        let s = scope();
        assert_eq!(s.mobile_network_prefix(&a("2001:db8:100::"), 48), Ok(()));
        for (p, l, problem) in [
            ("::", 0, Problem::PrefixLength),
            ("2000::", 3, Problem::PrefixLength),
            ("2001:db8:100::1", 48, Problem::HostBits),
            ("2001:db8::", 32, Problem::OverlapsHomePrefix),
            ("2001:db8:bee5::", 64, Problem::OverlapsHomePrefix),
            ("2001:db8:bee5:0:1::", 80, Problem::OverlapsHomePrefix),
            ("2001:db8:ffff::", 48, Problem::OverlapsLocalPrefix),
            ("ff00::", 16, Problem::Multicast),
            ("fe80::", 64, Problem::LinkLocal),
        ] {
            assert_eq!(s.mobile_network_prefix(&a(p), l), Err(problem), "{p}/{l}");
        }
    }

    #[test]
    fn static_bindings_name_the_field_and_value() {
        let e = static_binding(
            &scope(),
            &a("2001:db8:bee5::dead:face"),
            &a("2001:db8:f00d::1"),
            &[(a("::"), 0)],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "mobile network prefix ::/0 has a length outside 16..=128"
        );
        let e = static_binding(
            &scope(),
            &a("2001:db8:bee5::1:2"),
            &a("::ffff:10.0.0.1"),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "care-of address ::ffff:10.0.0.1 is an IPv4-mapped address"
        );
    }

    #[test]
    fn served_prefixes_are_not_everything() {
        assert_eq!(well_formed_prefix(&a("::"), 0), Err(Problem::PrefixLength));
        assert_eq!(well_formed_prefix(&a("2001:db8::"), 32), Ok(()));
        assert_eq!(
            well_formed_prefix(&a("2001:db8::1"), 32),
            Err(Problem::HostBits)
        );
    }
}
