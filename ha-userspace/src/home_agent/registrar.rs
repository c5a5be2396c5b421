//! Home registration decisions (RFC 6275 §9.5.1, §10.3.1, §10.3.2; RFC 3963 §6.1 for mobile
//! routers): given a received Binding Update and what the cache holds, what to answer and what
//! to change. Pure, so every rule is tested here by the section that states it; the daemon
//! carries the decision out (DAD, maps, kernel state, the BA).

use std::net::Ipv6Addr;

use ha_common::mh::{BU_FLAG_H, BU_FLAG_R};

use crate::config::{HomeAgentConfig, parse_prefix};

/// BA status codes hagent sends (RFC 6275 §6.1.8, RFC 3963 §4.2).
pub mod status {
    pub const ACCEPTED: u8 = 0;
    pub const UNSPECIFIED: u8 = 128;
    pub const ADMIN_PROHIBITED: u8 = 129;
    pub const INSUFFICIENT_RESOURCES: u8 = 130;
    pub const HOME_REG_NOT_SUPPORTED: u8 = 131;
    pub const NOT_HOME_SUBNET: u8 = 132;
    pub const NOT_HOME_AGENT_FOR_MN: u8 = 133;
    pub const DAD_FAILED: u8 = 134;
    pub const SEQUENCE_OUT_OF_WINDOW: u8 = 135;
    pub const REG_TYPE_CHANGE_DISALLOWED: u8 = 139;
    pub const MR_NOT_PERMITTED: u8 = 140;
    pub const INVALID_PREFIX: u8 = 141;
    pub const NOT_AUTHORIZED_FOR_PREFIX: u8 = 142;
    /// RFC 3963 §6.6: implicit mode (no Mobile Network Prefix option) and no prefixes
    /// configured for the mobile router.
    pub const FORWARDING_SETUP_FAILED: u8 = 143;
}

/// A received Binding Update, addresses resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingUpdate {
    /// From the Home Address option (or the source, when there was none).
    pub hoa: Ipv6Addr,
    /// The Alternate Care-of Address option if present, else the source (the CoA).
    pub coa: Ipv6Addr,
    /// Where the BU was sent: the HA address the binding will use.
    pub ha_address: Ipv6Addr,
    pub sequence: u16,
    pub flags: u16,
    pub lifetime_units: u16,
    /// Mobile Network Prefix options (NEMO), as received (length may be invalid).
    pub prefixes: Vec<(Ipv6Addr, u8)>,
}

/// What the cache holds for the HoA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Existing {
    /// The last accepted sequence number.
    pub sequence: u16,
    /// Registered with the R flag (a mobile router, RFC 3963).
    pub mobile_router: bool,
}

/// What to do with a Binding Update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Drop it without an answer.
    Ignore,
    /// Answer with this status and sequence number; change nothing.
    Reject { status: u8, sequence: u16 },
    /// Create (after DAD) or refresh/move the binding; answer status 0.
    Register {
        new: bool,
        lifetime_units: u16,
        refresh_units: Option<u16>,
        prefixes: Vec<(Ipv6Addr, u8)>,
        mobile_router: bool,
    },
    /// Delete the binding; answer status 0 with lifetime 0 (§10.3.2).
    Deregister,
}

/// Sequence numbers compare modulo 2^16 (§9.5.1): `a` is newer than `b` when it lies in the
/// 32768 values after `b`.
pub fn seq_newer(a: u16, b: u16) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d <= 32768
}

/// The node's side of a registration decision.
pub struct Policy<'a> {
    pub config: &'a HomeAgentConfig,
    /// Whether this node is a home agent at all (§10.3.1: otherwise 131).
    pub is_home_agent: bool,
    /// Whether the HoA is on one of the home links (§10.3.1: otherwise 132).
    pub on_home_link: bool,
}

/// Decides on a Binding Update (after the checksum and format checks of §9.2).
pub fn decide(bu: &BindingUpdate, existing: Option<Existing>, policy: &Policy<'_>) -> Decision {
    let reject = |status| Decision::Reject {
        status,
        sequence: bu.sequence,
    };
    // §9.5.1: without H this is a correspondent registration, which needs return routability
    // (Binding Authorization Data); hagent does not do route optimization, so drop it — unless
    // it would turn a home registration into another kind (§9.5.1: 139).
    if bu.flags & BU_FLAG_H == 0 {
        return match existing {
            Some(_) => reject(status::REG_TYPE_CHANGE_DISALLOWED),
            None => Decision::Ignore,
        };
    }
    if !policy.is_home_agent {
        return reject(status::HOME_REG_NOT_SUPPORTED);
    }
    // §9.5.1: sequence number out of window → 135 carrying the last accepted value.
    if let Some(e) = existing
        && !seq_newer(bu.sequence, e.sequence)
    {
        return Decision::Reject {
            status: status::SEQUENCE_OUT_OF_WINDOW,
            sequence: e.sequence,
        };
    }
    // §9.5.1: lifetime 0 or CoA = HoA is a deregistration (§10.3.2).
    if bu.lifetime_units == 0 || bu.coa == bu.hoa {
        return match existing {
            Some(_) => Decision::Deregister,
            None => reject(status::NOT_HOME_AGENT_FOR_MN),
        };
    }
    if !policy.on_home_link {
        return reject(status::NOT_HOME_SUBNET);
    }
    let mobile_router = bu.flags & BU_FLAG_R != 0;
    if mobile_router && !policy.config.accept_mobile_routers {
        return reject(status::MR_NOT_PERMITTED);
    }
    // RFC 3963 §6.2: a binding does not turn from a mobile node's into a mobile router's, or
    // back, by a Binding Update (deregister first).
    if let Some(e) = existing
        && e.mobile_router != mobile_router
    {
        return reject(status::REG_TYPE_CHANGE_DISALLOWED);
    }
    // Operator policy (UMIP's BindingAclPolicy): first rule naming the HoA, else the default.
    let rule = policy.config.acl.iter().find(|r| r.hoa == bu.hoa);
    let verdict = rule.map(|r| r.action).unwrap_or(policy.config.default_acl);
    if verdict.status() != status::ACCEPTED {
        return reject(verdict.status());
    }
    // RFC 3963 §6.1: a mobile router may register only prefixes it is authorised for.
    let mut prefixes = Vec::new();
    if mobile_router {
        let authorised: Vec<(Ipv6Addr, u8)> = rule
            .map(|r| {
                r.prefixes
                    .iter()
                    .filter_map(|p| parse_prefix(p).ok())
                    .collect()
            })
            .unwrap_or_default();
        for &(p, l) in &bu.prefixes {
            if l > 128 || l == 0 {
                return reject(status::INVALID_PREFIX);
            }
            if !authorised.contains(&(p, l)) {
                return reject(status::NOT_AUTHORIZED_FOR_PREFIX);
            }
            prefixes.push((p, l));
        }
        // RFC 3963 §5.2, §6.1: implicit mode — no prefix option — registers the prefixes
        // configured for this mobile router; with none configured there is nothing to
        // forward (§6.6: 143).
        if bu.prefixes.is_empty() {
            if authorised.is_empty() {
                return reject(status::FORWARDING_SETUP_FAILED);
            }
            prefixes = authorised;
        }
    }
    // §10.3.1: lifetime no longer than asked and than the configured maximum (4 s units).
    let max_units = (policy.config.max_binding_lifetime / 4).min(u16::MAX as u32) as u16;
    let lifetime_units = bu.lifetime_units.min(max_units);
    if lifetime_units == 0 {
        return reject(status::ADMIN_PROHIBITED);
    }
    // Binding Refresh Advice (§6.2.4): must be smaller than the lifetime.
    let refresh_units =
        (policy.config.binding_refresh_advice && lifetime_units > 1).then_some(lifetime_units / 2);
    Decision::Register {
        new: existing.is_none(),
        lifetime_units,
        refresh_units,
        prefixes,
        mobile_router,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AclRule, AclVerdict};
    use ha_common::mh::{BU_FLAG_A, BU_FLAG_K};

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn bu(seq: u16, lifetime_units: u16) -> BindingUpdate {
        BindingUpdate {
            hoa: a("2001:db8:bee5::dead:face"),
            coa: a("2001:db8:f00d::dead:face"),
            ha_address: a("2001:db8:bee5::c001:babe"),
            sequence: seq,
            flags: BU_FLAG_A | BU_FLAG_H,
            lifetime_units,
            prefixes: vec![],
        }
    }

    fn cfg() -> HomeAgentConfig {
        HomeAgentConfig {
            acl: vec![AclRule {
                hoa: a("2001:db8:bee5::dead:face"),
                prefixes: vec!["2001:db8:100::/48".into()],
                action: AclVerdict::ALLOW,
            }],
            default_acl: AclVerdict::DENY,
            max_binding_lifetime: 400,
            ..Default::default()
        }
    }

    fn policy(c: &HomeAgentConfig) -> Policy<'_> {
        Policy {
            config: c,
            is_home_agent: true,
            on_home_link: true,
        }
    }

    #[test]
    fn sequence_window_rfc6275_9_5_1() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(32768, 0));
        assert!(!seq_newer(32769, 0));
        assert!(!seq_newer(0, 0));
        assert!(seq_newer(0, 65535), "wraps around");
        assert!(seq_newer(10, 65000));
        assert!(!seq_newer(65000, 10));
    }

    #[test]
    fn new_home_registration_is_accepted_with_capped_lifetime_rfc6275_10_3_1() {
        let c = cfg();
        // 1000 units asked, 400 s = 100 units allowed.
        match decide(&bu(7, 1000), None, &policy(&c)) {
            Decision::Register {
                new,
                lifetime_units,
                refresh_units,
                ..
            } => {
                assert!(new);
                assert_eq!(lifetime_units, 100);
                assert_eq!(refresh_units, None);
            }
            d => panic!("{d:?}"),
        }
        // A shorter request is kept as asked.
        assert!(matches!(
            decide(&bu(7, 10), None, &policy(&c)),
            Decision::Register {
                lifetime_units: 10,
                ..
            }
        ));
    }

    #[test]
    fn refresh_advice_is_below_the_lifetime_rfc6275_6_2_4() {
        let mut c = cfg();
        c.binding_refresh_advice = true;
        match decide(&bu(7, 10), None, &policy(&c)) {
            Decision::Register {
                refresh_units: Some(r),
                lifetime_units,
                ..
            } => assert!(r < lifetime_units),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn replayed_sequence_gets_135_with_the_last_accepted_rfc6275_9_5_1() {
        let c = cfg();
        let e = Some(Existing {
            sequence: 10,
            mobile_router: false,
        });
        assert_eq!(
            decide(&bu(10, 10), e, &policy(&c)),
            Decision::Reject {
                status: 135,
                sequence: 10
            }
        );
        assert_eq!(
            decide(&bu(5, 10), e, &policy(&c)),
            Decision::Reject {
                status: 135,
                sequence: 10
            }
        );
        assert!(matches!(
            decide(&bu(11, 10), e, &policy(&c)),
            Decision::Register { new: false, .. }
        ));
    }

    #[test]
    fn deregistration_rfc6275_10_3_2() {
        let c = cfg();
        let e = Some(Existing {
            sequence: 10,
            mobile_router: false,
        });
        assert_eq!(decide(&bu(11, 0), e, &policy(&c)), Decision::Deregister);
        let mut home = bu(12, 10);
        home.coa = home.hoa;
        assert_eq!(
            decide(&home, e, &policy(&c)),
            Decision::Deregister,
            "CoA = HoA"
        );
        assert_eq!(
            decide(&bu(11, 0), None, &policy(&c)),
            Decision::Reject {
                status: 133,
                sequence: 11
            },
            "no binding to delete"
        );
    }

    #[test]
    fn refusals_rfc6275_10_3_1() {
        let c = cfg();
        let mut p = policy(&c);
        p.on_home_link = false;
        assert_eq!(
            decide(&bu(1, 10), None, &p),
            Decision::Reject {
                status: 132,
                sequence: 1
            }
        );
        let mut p = policy(&c);
        p.is_home_agent = false;
        assert_eq!(
            decide(&bu(1, 10), None, &p),
            Decision::Reject {
                status: 131,
                sequence: 1
            }
        );
        // Not in the ACL, default deny.
        let mut other = bu(1, 10);
        other.hoa = a("2001:db8:bee5::bad");
        assert_eq!(
            decide(&other, None, &policy(&c)),
            Decision::Reject {
                status: 129,
                sequence: 1
            }
        );
        // A numeric ACL verdict is answered as is.
        let mut c2 = cfg();
        c2.acl[0].action = AclVerdict::Status(130);
        assert_eq!(
            decide(&bu(1, 10), None, &policy(&c2)),
            Decision::Reject {
                status: 130,
                sequence: 1
            }
        );
    }

    #[test]
    fn registration_type_change_rfc6275_9_5_1() {
        let c = cfg();
        let mut not_home = bu(11, 10);
        not_home.flags = BU_FLAG_A;
        assert_eq!(
            decide(
                &not_home,
                Some(Existing {
                    sequence: 10,
                    mobile_router: false
                }),
                &policy(&c)
            ),
            Decision::Reject {
                status: 139,
                sequence: 11
            }
        );
        assert_eq!(decide(&not_home, None, &policy(&c)), Decision::Ignore);
    }

    #[test]
    fn mobile_routers_rfc3963() {
        let mut c = cfg();
        let mut mr = bu(1, 10);
        mr.flags |= BU_FLAG_R;
        mr.prefixes = vec![(a("2001:db8:100::"), 48)];
        assert_eq!(
            decide(&mr, None, &policy(&c)),
            Decision::Reject {
                status: 140,
                sequence: 1
            }
        );
        c.accept_mobile_routers = true;
        assert!(
            matches!(decide(&mr, None, &policy(&c)), Decision::Register { mobile_router: true, ref prefixes, .. } if prefixes.len() == 1)
        );
        mr.prefixes = vec![(a("2001:db8:200::"), 48)];
        assert_eq!(
            decide(&mr, None, &policy(&c)),
            Decision::Reject {
                status: 142,
                sequence: 1
            }
        );
        mr.prefixes = vec![(a("2001:db8:100::"), 200)];
        assert_eq!(
            decide(&mr, None, &policy(&c)),
            Decision::Reject {
                status: 141,
                sequence: 1
            }
        );
    }

    #[test]
    fn implicit_mode_registers_the_configured_prefixes_rfc3963_6_1() {
        let mut c = cfg();
        c.accept_mobile_routers = true;
        let mut mr = bu(1, 10);
        mr.flags |= BU_FLAG_R;
        // No Mobile Network Prefix option: the ACL's prefixes for this HoA.
        assert!(
            matches!(decide(&mr, None, &policy(&c)), Decision::Register { mobile_router: true, ref prefixes, .. } if *prefixes == vec![(a("2001:db8:100::"), 48)])
        );
        // None configured: nothing to forward, 143.
        c.acl[0].prefixes.clear();
        assert_eq!(
            decide(&mr, None, &policy(&c)),
            Decision::Reject {
                status: 143,
                sequence: 1
            }
        );
    }

    #[test]
    fn the_r_flag_of_a_binding_does_not_change_rfc3963_6_2() {
        let mut c = cfg();
        c.accept_mobile_routers = true;
        let host = Existing {
            sequence: 1,
            mobile_router: false,
        };
        let router = Existing {
            sequence: 1,
            mobile_router: true,
        };
        let mut mr = bu(2, 10);
        mr.flags |= BU_FLAG_R;
        assert_eq!(
            decide(&mr, Some(host), &policy(&c)),
            Decision::Reject {
                status: 139,
                sequence: 2
            }
        );
        let plain = bu(2, 10);
        assert_eq!(
            decide(&plain, Some(router), &policy(&c)),
            Decision::Reject {
                status: 139,
                sequence: 2
            }
        );
        assert!(matches!(
            decide(&mr, Some(router), &policy(&c)),
            Decision::Register { new: false, .. }
        ));
        // A deregistration is accepted either way (§10.3.2).
        let mut bye = bu(3, 0);
        bye.flags |= BU_FLAG_R;
        assert_eq!(decide(&bye, Some(host), &policy(&c)), Decision::Deregister);
    }

    #[test]
    fn the_k_bit_does_not_change_the_decision() {
        let c = cfg();
        let mut k = bu(1, 10);
        k.flags |= BU_FLAG_K;
        assert!(matches!(
            decide(&k, None, &policy(&c)),
            Decision::Register { .. }
        ));
    }
}
