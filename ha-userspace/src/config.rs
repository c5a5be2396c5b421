//! The daemon's configuration.
//!
//! This is the native TOML form; UMIP's `mip6d.conf` syntax will be parsed into the same
//! [`Config`]. Unknown keys are errors: a typo must never be silently ignored.

use std::{net::Ipv6Addr, path::Path};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode; if the driver has no native XDP, fall back to generic and say so.
    #[default]
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

impl XdpMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

impl std::str::FromStr for XdpMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            _ => bail!("invalid XDP mode {s:?}: expected \"native\" or \"generic\""),
        }
    }
}

/// Which side of Mobile IPv6 this node plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    HomeAgent,
    MobileNode,
}

fn default_max_bindings() -> u32 {
    1 << 20
}
fn default_max_prefixes() -> u32 {
    1 << 16
}
fn default_true() -> bool {
    true
}
fn default_hop_limit() -> u8 {
    64
}
fn default_icmp_rate() -> u32 {
    100
}
fn default_max_binding_life() -> u32 {
    262_140
}

/// Data plane settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Interfaces the node serves; the XDP and TC programs are attached to each.
    pub interfaces: Vec<String>,
    /// Attach mode for all interfaces.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// Size of the binding cache (bindings). Default 1,048,576.
    #[serde(default = "default_max_bindings")]
    pub max_bindings: u32,
    /// Size of the mobile network prefix table. Default 65,536.
    #[serde(default = "default_max_prefixes")]
    pub max_prefixes: u32,
    /// Cache next hops per tunnel destination (invalidated on every routing change).
    #[serde(default = "default_true")]
    pub nexthop_cache: bool,
    /// Hop limit of the outer (tunnel) header.
    #[serde(default = "default_hop_limit")]
    pub outer_hop_limit: u8,
    /// ICMPv6 Packet Too Big messages per second per CPU.
    #[serde(default = "default_icmp_rate")]
    pub icmp_rate: u32,
}

/// Home agent settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HomeAgentConfig {
    /// The HA's addresses on its home links: tunnel endpoints and BU destinations.
    #[serde(default)]
    pub addresses: Vec<Ipv6Addr>,
    /// Upper bound on a home registration's lifetime, in seconds (UMIP's HaMaxBindingLife).
    #[serde(default = "default_max_binding_life")]
    pub max_binding_lifetime: u32,
}

/// Mobile node settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeConfig {
    pub home_address: Ipv6Addr,
    pub home_agent: Ipv6Addr,
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub home_agent: HomeAgentConfig,
    #[serde(default)]
    pub mobile_node: Option<MobileNodeConfig>,
    pub dataplane: DataplaneConfig,
}

impl Config {
    /// Parses a TOML configuration; errors name the line, column and offending text.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        config.validate().with_context(|| origin.to_string())?;
        Ok(config)
    }

    /// Reads and parses the configuration file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    fn validate(&self) -> anyhow::Result<()> {
        let d = &self.dataplane;
        if d.interfaces.is_empty() {
            bail!("dataplane.interfaces: at least one interface is required");
        }
        let mut seen = std::collections::HashSet::new();
        for name in &d.interfaces {
            if name.is_empty() || name.len() >= libc::IFNAMSIZ {
                bail!(
                    "dataplane.interfaces: {name:?} is not a valid interface name (1 to {} bytes)",
                    libc::IFNAMSIZ - 1
                );
            }
            if !seen.insert(name) {
                bail!("dataplane.interfaces: {name:?} is listed twice");
            }
        }
        if d.max_bindings == 0 || d.max_bindings > 1 << 24 {
            bail!(
                "dataplane.max_bindings: {} is outside 1..=16777216",
                d.max_bindings
            );
        }
        if d.max_prefixes == 0 || d.max_prefixes > 1 << 24 {
            bail!(
                "dataplane.max_prefixes: {} is outside 1..=16777216",
                d.max_prefixes
            );
        }
        if d.outer_hop_limit == 0 {
            bail!("dataplane.outer_hop_limit: must be at least 1");
        }
        for a in &self.home_agent.addresses {
            if !is_global_unicast(a) {
                bail!("home_agent.addresses: {a} is not a global unicast address");
            }
        }
        if self.home_agent.max_binding_lifetime > 262_140 {
            bail!(
                "home_agent.max_binding_lifetime: {} s exceeds the protocol's maximum of 262140 s",
                self.home_agent.max_binding_lifetime
            );
        }
        match (self.role, &self.mobile_node) {
            (Role::HomeAgent, _) if self.home_agent.addresses.is_empty() => {
                bail!("home_agent.addresses: a home agent needs at least one address")
            }
            (Role::MobileNode, None) => {
                bail!("mobile_node: role = \"mobile_node\" needs a [mobile_node] section")
            }
            _ => Ok(()),
        }
    }
}

/// Global unicast: not unspecified, loopback, multicast or link-local.
pub fn is_global_unicast(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || o[0] == 0xff
        || (o[0] == 0xfe && o[1] & 0xc0 == 0x80))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config() {
        let c = Config::from_toml(
            "[home_agent]\naddresses = [\"2001:db8::1\"]\n[dataplane]\ninterfaces = [\"eth0\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.role, Role::HomeAgent);
        assert_eq!(c.dataplane.max_bindings, 1 << 20);
        assert_eq!(c.dataplane.interfaces, ["eth0"]);
        assert_eq!(c.dataplane.xdp_mode, XdpMode::Native);
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = Config::from_toml(
            "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mod = \"generic\"\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("xdp_mod"), "{e}");
    }

    #[test]
    fn bad_mode_and_duplicates() {
        let e = Config::from_toml(
            "[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fast"), "{e}");
        let e = format!(
            "{:#}",
            Config::from_toml("[dataplane]\ninterfaces = [\"eth0\", \"eth0\"]\n", "f").unwrap_err()
        );
        assert!(e.contains("listed twice"), "{e}");
        let e = format!(
            "{:#}",
            Config::from_toml("[dataplane]\ninterfaces = []\n", "f").unwrap_err()
        );
        assert!(e.contains("at least one"), "{e}");
    }
}
