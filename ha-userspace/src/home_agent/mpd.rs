//! Mobile Prefix Discovery, the home agent's side (RFC 6275 §10.6): a Mobile Prefix
//! Solicitation from a bound home address gets a Mobile Prefix Advertisement listing the home
//! prefixes of its home link, sent to the home address (through the tunnel, as everything for
//! a bound HoA). Pure codec; the home agent checks the binding and the budget.

use std::net::Ipv6Addr;

pub const MOBILE_PREFIX_SOLICITATION: u8 = 146;
pub const MOBILE_PREFIX_ADVERTISEMENT: u8 = 147;
/// Prefix lifetimes advertised (radvd's defaults for AdvValidLifetime/AdvPreferredLifetime):
/// the home prefixes here are configured, not learned, so they have no lifetime of their own.
pub const VALID_LIFETIME: u32 = 2_592_000;
pub const PREFERRED_LIFETIME: u32 = 604_800;

/// The identifier of a Mobile Prefix Solicitation (RFC 6275 §6.7), None if `icmp` is not one.
pub fn parse_solicitation(icmp: &[u8]) -> Option<u16> {
    if icmp.len() < 8 || icmp[0] != MOBILE_PREFIX_SOLICITATION || icmp[1] != 0 {
        return None;
    }
    Some(u16::from_be_bytes([icmp[4], icmp[5]]))
}

/// A Mobile Prefix Advertisement (RFC 6275 §6.8) for `prefixes`, each as a Prefix Information
/// option (RFC 4861 §4.6.2) with the on-link flag, autonomous for a /64, and the router
/// address flag with `ha_address` in the prefix field when it lies in the prefix (§7.2).
/// Checksum zero: the raw socket fills it in.
pub fn advertisement(
    identifier: u16,
    prefixes: &[(Ipv6Addr, u8)],
    ha_address: Ipv6Addr,
) -> Vec<u8> {
    let mut v = vec![MOBILE_PREFIX_ADVERTISEMENT, 0, 0, 0];
    v.extend_from_slice(&identifier.to_be_bytes());
    v.extend_from_slice(&[0, 0]); // M, O clear: the home link has no DHCPv6 we know of
    for &(p, len) in prefixes.iter().take(32) {
        let inside = crate::system::prefix_contains(p, len, ha_address);
        let mut flags = 0x80; // L
        if len == 64 {
            flags |= 0x40; // A
        }
        if inside {
            flags |= 0x20; // R
        }
        v.extend_from_slice(&[3, 4, len, flags]);
        v.extend_from_slice(&VALID_LIFETIME.to_be_bytes());
        v.extend_from_slice(&PREFERRED_LIFETIME.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&if inside { ha_address } else { p }.octets());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn solicitation_and_advertisement_rfc6275_6_7_6_8() {
        assert_eq!(
            parse_solicitation(&[146, 0, 0, 0, 0xab, 0xcd, 0, 0]),
            Some(0xabcd)
        );
        assert_eq!(parse_solicitation(&[146, 1, 0, 0, 0xab, 0xcd, 0, 0]), None);
        assert_eq!(parse_solicitation(&[147, 0, 0, 0, 0xab, 0xcd, 0, 0]), None);
        let ha = a("2001:db8:bee5::c001:babe");
        let m = advertisement(
            0xabcd,
            &[(a("2001:db8:bee5::"), 64), (a("2001:db8:77::"), 48)],
            ha,
        );
        assert_eq!(&m[..8], &[147, 0, 0, 0, 0xab, 0xcd, 0, 0]);
        assert_eq!(m.len(), 8 + 2 * 32);
        // The home prefix: L, A, R with the HA's address (RFC 6275 §7.2).
        assert_eq!(&m[8..12], &[3, 4, 64, 0xe0]);
        assert_eq!(&m[12..16], &VALID_LIFETIME.to_be_bytes());
        assert_eq!(&m[16..20], &PREFERRED_LIFETIME.to_be_bytes());
        assert_eq!(&m[24..40], &ha.octets());
        // Another prefix: L only, the prefix itself.
        assert_eq!(&m[40..44], &[3, 4, 48, 0x80]);
        assert_eq!(&m[56..72], &a("2001:db8:77::").octets());
    }
}
