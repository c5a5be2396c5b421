//! The bodies of the fuzz targets: `fuzz/fuzz_targets/*.rs` (cargo-fuzz, libFuzzer) call these,
//! and a unit test replays every input saved in `fuzz/regressions/` through them, so each crash
//! found once stays fixed. Each one feeds hostile bytes to a parser or to the registration
//! state machine and panics when a property breaks — not only when the code under test does.

use std::{
    collections::HashSet,
    net::Ipv6Addr,
    path::Path,
    time::{Duration, Instant},
};

use ha_common::{mh, nd};

use crate::{
    bindings::{Applied, ApplyError, BindingCache, CacheError, Change, Op},
    config::{AclRule, AclVerdict, Config, HomeAgentConfig, LimitsConfig, setkey, umip},
    home_agent::{
        registrar::BindingUpdate,
        registration::{Effect, Registrations},
    },
    mobility,
    sock::Received,
    validate::{HomePrefix, Scope},
};

/// The Mobility Header codec: never panics; what it parses as a BU builds back to the same.
pub fn mobility_header(data: &[u8]) {
    let Ok(m) = mh::MobilityHeader::parse(data) else {
        return;
    };
    let _ = m.verify_checksum(&[1; 16], &[2; 16]);
    if let mh::Message::BindingUpdate(bu) = &m.message {
        for o in bu.options.iter() {
            let _ = o;
        }
        let fields = mh::BuFields {
            sequence: bu.sequence,
            flags: bu.flags,
            lifetime_units: bu.lifetime_units,
        };
        let mut buf = [0u8; 64];
        let n = mh::build_binding_update(&mut buf, &[1; 16], &[2; 16], &fields, &[])
            .expect("a parsed BU's fields build");
        let again = mh::MobilityHeader::parse(&buf[..n]).expect("what we build parses");
        assert!(again.verify_checksum(&[1; 16], &[2; 16]));
        match again.message {
            mh::Message::BindingUpdate(b) => assert_eq!(
                (b.sequence, b.flags, b.lifetime_units),
                (bu.sequence, bu.flags, bu.lifetime_units)
            ),
            other => panic!("built a BU, parsed {other:?}"),
        }
    }
}

/// A received datagram as the MH socket hands it over, from fuzz bytes: [dstopts length] [dst
/// options] [MH].
pub fn binding_update(data: &[u8]) {
    let (dlen, rest) = match data.split_first() {
        Some((l, r)) => ((*l as usize).min(r.len()), r),
        None => return,
    };
    let (dstopts, mh) = rest.split_at(dlen);
    let rx = Received {
        data: mh.to_vec(),
        src: "2001:db8:bee5::dead:face".parse().expect("address"),
        dst: "2001:db8:bee5::c001:babe".parse().expect("address"),
        ifindex: 2,
        dstopts: (!dstopts.is_empty()).then(|| dstopts.to_vec()),
        hop_limit: None,
    };
    if let Ok(bu) = mobility::parse_bu(&rx) {
        assert_eq!(bu.hoa, rx.src);
        assert_eq!(bu.ha_address, rx.dst);
    }
}

/// Neighbor Solicitation validation: never panics; what it accepts is what RFC 4861 §7.1.1
/// allows.
pub fn neighbor_solicitation(data: &[u8]) {
    if data.len() < 34 {
        return;
    }
    let len = data[0] as usize;
    let hop_limit = data[1];
    let mut src = [0u8; 16];
    src.copy_from_slice(&data[2..18]);
    if data[2] & 1 == 1 {
        src = [0; 16];
    }
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&data[18..34]);
    let mut msg = [0u8; nd::NS_MAX_LEN];
    let body = &data[34..];
    let n = body.len().min(nd::NS_MAX_LEN).min(len);
    msg[..n].copy_from_slice(&body[..n]);
    if let Ok(ns) = nd::check_ns(&msg, len, hop_limit, &src, &dst) {
        assert_eq!(hop_limit, 255);
        assert!((nd::ND_MIN_LEN..=nd::NS_MAX_LEN).contains(&len));
        assert_ne!(ns.target[0], 0xff, "multicast target accepted");
        if ns.dad {
            assert_eq!(dst, nd::solicited_node(&ns.target));
        }
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// mip6d.conf: never panics; a configuration it accepts prints as TOML that loads again.
pub fn mip6d_conf(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let Ok(u) = umip::parse_str(t, Path::new("fuzz.conf")) else {
        return;
    };
    let Ok(c) = Config::from_umip(&u) else { return };
    let printed = toml::to_string_pretty(&c).expect("an accepted configuration prints");
    if let Err(e) = Config::from_toml(&printed, "printed.toml") {
        panic!("the printed configuration does not load: {e:#}\n{printed}");
    }
}

/// setkey.conf: never panics.
pub fn setkey_conf(data: &[u8]) {
    let Some(t) = text(data) else { return };
    let _ = setkey::parse_str(t, Path::new("fuzz-setkey.conf"));
}

/// The TOML configuration: never panics; the line an error shows (its last, after `  | `)
/// never holds `key`. (The message before it may quote words and values of the input: a line
/// reading `invalid key (line 9)` or a multi-line `role` value is not key material.)
pub fn toml_conf(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Err(e) = Config::from_toml(t, "fuzz.toml") {
        let msg = format!("{e:#}");
        // `config::toml_error` ends its message with the line it shows; the message before
        // may quote a value, newlines and all.
        if let Some((_, shown)) = msg.rsplit_once("\n  | ") {
            assert!(
                shown == "(line not shown: it may hold key material)"
                    || !shown.to_ascii_lowercase().contains("key"),
                "an error echoes a key line: {msg}"
            );
        }
    }
}

const HA: &str = "2001:db8:bee5::c001:babe";
const ALLOWED: &str = "2001:db8:bee5::dead:face";

/// Addresses the script draws from: good ones and the ones the trust boundary refuses.
const ADDRESSES: &[&str] = &[
    ALLOWED,
    "2001:db8:bee5::1",
    "2001:db8:bee5::2",
    "2001:db8:bee5::3",
    HA,
    "2001:db8:bee5::fdff:ffff:ffff:fffe",
    "2001:db8:bee5::",
    "2001:db8:f00d::1",
    "2001:db8:f00d::2",
    "2001:db8:cafe::1",
    "::",
    "::1",
    "::ffff:10.0.0.1",
    "ff02::1",
    "fe80::1",
    "fd00::1",
];

const PREFIXES: &[(&str, u8)] = &[
    ("2001:db8:100::", 48),
    ("2001:db8:200::", 48),
    ("::", 0),
    ("2001:db8::", 32),
    ("2001:db8:bee5::", 64),
];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn addr(&mut self) -> Option<Ipv6Addr> {
        let i = self.u8()?;
        if i < 200 {
            ADDRESSES[i as usize % ADDRESSES.len()].parse().ok()
        } else {
            // A random address in the home prefix.
            Some(Ipv6Addr::from(
                (0x2001_0db8_bee5_0000u128 << 64) | u128::from(self.u16()?),
            ))
        }
    }
}

/// The registration state machine under a script of events — Binding Updates, DAD outcomes,
/// the binding layer's failures, operator requests, expiries, time — with the binding layer
/// played by a real cache. After every step: the cache holds only bindings the trust boundary
/// allows and never more than its capacity; registrations in flight stay bounded; every
/// operator request is answered once.
pub fn registration(data: &[u8]) {
    let mut b = Bytes(data);
    let Some(mode) = b.u8() else { return };
    let scope = Scope {
        home_prefixes: vec![HomePrefix {
            prefix: "2001:db8:bee5::".parse().expect("prefix"),
            len: 64,
            ifindex: 2,
            ha_address: HA.parse().expect("address"),
        }],
        local_addresses: vec![HA.parse().expect("address")],
        local_prefixes: vec![("2001:db8:bee5::".parse().expect("prefix"), 64)],
    };
    let config = HomeAgentConfig {
        acl: vec![AclRule {
            hoa: ALLOWED.parse().expect("address"),
            prefixes: vec!["2001:db8:100::/48".into()],
            action: AclVerdict::ALLOW,
        }],
        default_acl: if mode & 1 == 0 {
            AclVerdict::ALLOW
        } else {
            AclVerdict::DENY
        },
        dad: mode & 2 == 0,
        accept_mobile_routers: mode & 4 == 0,
        max_binding_lifetime: 400,
        limits: LimitsConfig {
            max_pending_dad: 3,
            registrations_per_source: 2,
            registration_burst_per_source: 4,
            tracked_sources: 4,
        },
        ..Default::default()
    };
    const CAPACITY: u32 = 6;
    let mut r = Registrations::new(&config, scope.clone(), CAPACITY as usize);
    let mut cache = BindingCache::new(CAPACITY);
    let mut now = Instant::now();
    let mut dads: Vec<Ipv6Addr> = Vec::new();
    let mut fail_next: Option<u8> = None;
    let mut open_requests: HashSet<u64> = HashSet::new();
    let mut next_id = 0u64;
    for _ in 0..512 {
        let Some(op) = b.u8() else { break };
        match op % 8 {
            0 | 1 => {
                let (Some(hoa), Some(coa), Some(seq), Some(life), Some(flags)) =
                    (b.addr(), b.addr(), b.u16(), b.u8(), b.u8())
                else {
                    break;
                };
                let mut prefixes = Vec::new();
                if flags & 0x80 != 0 {
                    let (p, l) = PREFIXES[flags as usize % PREFIXES.len()];
                    prefixes.push((p.parse().expect("prefix"), l));
                }
                let bu = BindingUpdate {
                    hoa,
                    coa: if op % 8 == 1 { hoa } else { coa },
                    ha_address: HA.parse().expect("address"),
                    sequence: seq,
                    flags: u16::from(flags) << 8,
                    lifetime_units: u16::from(life),
                    prefixes,
                };
                let existing = cache.get(&bu.hoa).cloned();
                r.handle_bu(bu, existing.as_ref(), cache.len(), now);
            }
            2 => {
                let (Some(i), Some(outcome)) = (b.u8(), b.u8()) else {
                    break;
                };
                if !dads.is_empty() {
                    let hoa = dads.remove(i as usize % dads.len());
                    let result = match outcome % 3 {
                        0 => Ok(false),
                        1 => Ok(true),
                        _ => Err("no socket".to_string()),
                    };
                    r.handle_dad(hoa, result);
                }
            }
            3 => {
                let (Some(hoa), Some(coa), Some(p)) = (b.addr(), b.addr(), b.u8()) else {
                    break;
                };
                let prefixes = if p & 1 == 1 {
                    let (a, l) = PREFIXES[p as usize % PREFIXES.len()];
                    vec![(a.parse().expect("prefix"), l)]
                } else {
                    vec![]
                };
                next_id += 1;
                open_requests.insert(next_id);
                let existing = cache.get(&hoa).cloned();
                let lifetime = (p & 2 == 2).then(|| Duration::from_secs(u64::from(p)));
                r.handle_static_add(
                    next_id,
                    hoa,
                    coa,
                    lifetime,
                    prefixes,
                    existing.as_ref(),
                    cache.len(),
                );
            }
            4 => {
                let Some(hoa) = b.addr() else { break };
                next_id += 1;
                open_requests.insert(next_id);
                r.handle_static_remove(next_id, hoa, cache.get(&hoa).is_some());
            }
            5 => {
                let Some(ms) = b.u16() else { break };
                now += Duration::from_millis(u64::from(ms) * 16);
                for hoa in cache.expired(now) {
                    r.handle_expired(hoa);
                }
            }
            6 => fail_next = b.u8(),
            _ => {
                let Some(hoa) = b.addr() else { break };
                if cache.get(&hoa).is_some() {
                    r.handle_expired(hoa);
                }
            }
        }
        // Carry out the effects, as the driver does.
        while let Some(e) = r.poll_effect() {
            match e {
                Effect::StartDad { hoa, .. } => {
                    assert!(!dads.contains(&hoa), "two probes of {hoa}");
                    dads.push(hoa);
                }
                Effect::CancelDad { hoa } => dads.retain(|h| *h != hoa),
                Effect::Apply(op) => {
                    let hoa = op.hoa();
                    let result = match (fail_next.take(), op) {
                        (Some(f), Op::Put(_)) if f % 2 == 0 => {
                            Err(ApplyError::Failed(anyhow::anyhow!("injected")))
                        }
                        (_, Op::Put(spec)) => match cache.upsert(spec, now) {
                            Ok(Change::Created { id, .. }) => Ok(Applied::Created { id }),
                            Ok(Change::Updated { id, previous }) => {
                                Ok(Applied::Updated { id, previous })
                            }
                            Err(CacheError::Full { capacity }) => {
                                Err(ApplyError::Full { capacity })
                            }
                        },
                        (_, Op::Remove(h)) => match cache.remove(&h) {
                            Some(b) => Ok(Applied::Removed(b)),
                            None => Err(ApplyError::NotBound(h)),
                        },
                    };
                    r.handle_applied(hoa, &result);
                }
                Effect::Reply { id, .. } => {
                    assert!(open_requests.remove(&id), "request {id} answered twice");
                }
                Effect::Ba { .. } | Effect::Advertise { .. } => {}
            }
        }
        // The properties.
        assert!(cache.len() <= CAPACITY as usize);
        assert!(
            r.in_progress() <= 3 + 1 + open_requests.len(),
            "{}",
            r.in_progress()
        );
        assert_eq!(dads.len(), dads.iter().collect::<HashSet<_>>().len());
        for binding in cache.iter() {
            let s = &binding.spec;
            assert!(
                scope.home_address(&s.hoa).is_ok(),
                "bound a HoA the trust boundary refuses: {}",
                s.hoa
            );
            assert!(
                scope.care_of_address(&s.coa).is_ok(),
                "bound a CoA the trust boundary refuses: {}",
                s.coa
            );
            for &(p, l) in &s.prefixes {
                assert!(
                    scope.mobile_network_prefix(&p, l).is_ok(),
                    "bound a prefix the trust boundary refuses: {p}/{l}"
                );
            }
        }
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name (the regression test and `cargo xtask fuzz` use the names).
pub const TARGETS: &[(&str, Target)] = &[
    ("mobility_header", mobility_header),
    ("binding_update", binding_update),
    ("neighbor_solicitation", neighbor_solicitation),
    ("mip6d_conf", mip6d_conf),
    ("setkey_conf", setkey_conf),
    ("toml_conf", toml_conf),
    ("registration", registration),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input a fuzzer ever saved as a crash (`fuzz/regressions/<target>/`), replayed.
    #[test]
    fn fuzz_regressions_stay_fixed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        let mut replayed = 0;
        for (name, f) in TARGETS {
            let Ok(dir) = std::fs::read_dir(root.join(name)) else {
                continue;
            };
            for e in dir.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                f(&data);
                replayed += 1;
            }
        }
        eprintln!("{replayed} fuzz regressions replayed");
    }

    /// The seed corpus runs clean (and so the targets are exercised by `cargo test` too).
    #[test]
    fn fuzz_seed_corpus_runs_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (name, f) in TARGETS {
            for e in std::fs::read_dir(root.join(name))
                .into_iter()
                .flatten()
                .flatten()
            {
                f(&std::fs::read(e.path()).unwrap());
            }
        }
    }
}
