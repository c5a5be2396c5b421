//! The interfaces a node serves, and what follows from their addresses: the home agent's
//! addresses and the [`Scope`] of the trust boundary (home prefixes, the node's own addresses).

use std::net::Ipv6Addr;

use anyhow::{Context as _, bail};

use crate::{
    bindings::Link,
    config::{Config, Role, is_global_unicast, parse_prefix},
    homelink::OwnedRoute,
    system::{self, InterfaceAddress},
    validate::{HomePrefix, MIN_PREFIX_LEN, Scope},
};

/// An interface the node serves.
#[derive(Clone, Debug)]
pub struct Served {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Its IPv6 addresses (refreshed on address events).
    pub addresses: Vec<InterfaceAddress>,
}

impl Served {
    pub fn link(&self) -> Link {
        Link {
            name: self.name.clone(),
            ifindex: self.ifindex,
            mac: self.mac,
            mtu: self.mtu,
        }
    }

    /// Whether `a` is configured on this interface.
    pub fn has(&self, a: &Ipv6Addr) -> bool {
        self.addresses.iter().any(|x| x.addr == *a)
    }

    /// A source for Neighbor Advertisements on this link: its link-local address, else any.
    pub fn nd_source(&self) -> Option<Ipv6Addr> {
        self.addresses
            .iter()
            .find(|a| a.addr.segments()[0] & 0xffc0 == 0xfe80)
            .or(self.addresses.first())
            .map(|a| a.addr)
    }
}

/// Checks that every configured interface exists and reads what the node needs of it — before
/// touching the kernel, so a typo leaves nothing half-configured.
pub fn discover(names: &[String]) -> anyhow::Result<Vec<Served>> {
    names
        .iter()
        .map(|name| {
            Ok(Served {
                name: name.clone(),
                ifindex: system::ifindex(name).context("dataplane.interfaces")?,
                mac: system::mac_address(name)?,
                mtu: system::mtu(name)?,
                addresses: system::ipv6_addresses(name)?,
            })
        })
        .collect()
}

/// Reads the interfaces' addresses again (an address event).
pub fn refresh(served: &mut [Served]) {
    for s in served {
        if let Ok(a) = system::ipv6_addresses(&s.name) {
            s.addresses = a;
        }
    }
}

/// The home agent's addresses: `home_agent.addresses`; else the `HomeAgentAddress`es of the
/// IPsec policy sets that are configured on a served interface; else the global addresses of
/// the first served interface. The interfaces holding them are the home links: their on-link
/// prefixes are the home prefixes. (The other served interfaces carry tunnel traffic — an
/// uplink, a foreign link the node also routes — and their prefixes are nobody's home.)
pub fn home_agent_addresses(config: &Config, served: &[Served]) -> anyhow::Result<Vec<Ipv6Addr>> {
    if !config.home_agent.addresses.is_empty() {
        return Ok(config.home_agent.addresses.clone());
    }
    let configured = |a: &Ipv6Addr| served.iter().any(|s| s.has(a));
    let mut out: Vec<Ipv6Addr> = Vec::new();
    for set in &config.ipsec.sets {
        if configured(&set.home_agent) && !out.contains(&set.home_agent) {
            out.push(set.home_agent);
        }
    }
    if out.is_empty()
        && let Some(s) = served.first()
    {
        for a in &s.addresses {
            if is_global_unicast(&a.addr) && !out.contains(&a.addr) {
                out.push(a.addr);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no home agent address: the served interfaces ({}) have no global IPv6 address; \
             configure one, or list home_agent.addresses",
            served
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

/// What the node serves and owns, for the trust boundary. Home prefixes: the on-link prefixes
/// of the global addresses of the home links (the served interfaces that hold a home agent
/// address), each with the home agent address there; and `home_agent.home_prefixes` (UMIP's
/// `HaServedPrefix`), on the interface that holds the first home agent address.
pub fn scope(config: &Config, served: &[Served], ha: &[Ipv6Addr]) -> Scope {
    let mut home_prefixes = Vec::new();
    let ha_on = |s: &Served| ha.iter().find(|h| s.has(h)).copied();
    if config.role == Role::HomeAgent {
        for s in served {
            let Some(ha_address) = ha_on(s) else { continue };
            for a in &s.addresses {
                if a.prefix_len >= MIN_PREFIX_LEN
                    && a.prefix_len < 128
                    && is_global_unicast(&a.addr)
                {
                    let p = HomePrefix {
                        prefix: system::network(a.addr, a.prefix_len),
                        len: a.prefix_len,
                        ifindex: s.ifindex,
                        ha_address,
                    };
                    if !home_prefixes.contains(&p) {
                        home_prefixes.push(p);
                    }
                }
            }
        }
        let home = served.iter().find(|s| ha.first().is_some_and(|h| s.has(h)));
        let home = home.map(|s| (s, ha_on(s))).or_else(|| {
            // The home agent address is not on-link anywhere (a loopback address, say): the
            // extra prefixes go to the first served interface.
            served.first().map(|s| (s, ha.first().copied()))
        });
        if let Some((s, Some(ha_address))) = home {
            for p in &config.home_agent.home_prefixes {
                if let Ok((prefix, len)) = parse_prefix(p) {
                    let hp = HomePrefix {
                        prefix,
                        len,
                        ifindex: s.ifindex,
                        ha_address,
                    };
                    if !home_prefixes.contains(&hp) {
                        home_prefixes.push(hp);
                    }
                }
            }
        }
    }
    let all = system::all_ipv6_addresses().unwrap_or_default();
    let mut local_addresses: Vec<Ipv6Addr> = ha.to_vec();
    let mut local_prefixes = Vec::new();
    for (_, a) in &all {
        if !local_addresses.contains(&a.addr) {
            local_addresses.push(a.addr);
        }
        if is_global_unicast(&a.addr) && a.prefix_len < 128 {
            let p = (system::network(a.addr, a.prefix_len), a.prefix_len);
            if !local_prefixes.contains(&p) {
                local_prefixes.push(p);
            }
        }
    }
    Scope {
        home_prefixes,
        local_addresses,
        local_prefixes,
    }
}

/// Routes for the home prefixes that no served interface has on-link (`HaServedPrefix`), so
/// the kernel's packets for their HoAs leave through the home link to the TC program.
pub fn home_routes(scope: &Scope, served: &[Served]) -> Vec<OwnedRoute> {
    scope
        .home_prefixes
        .iter()
        .filter(|p| {
            !served.iter().any(|s| {
                s.addresses.iter().any(|a| {
                    a.prefix_len == p.len && system::network(a.addr, a.prefix_len) == p.prefix
                })
            })
        })
        .map(|p| OwnedRoute {
            prefix: p.prefix,
            len: p.len,
            gateway: None,
            ifindex: p.ifindex,
            mtu: None,
        })
        .collect()
}
