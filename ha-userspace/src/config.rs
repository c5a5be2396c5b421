//! The daemon's configuration.
//!
//! This is the native TOML form; UMIP's `mip6d.conf` syntax will be parsed into the same
//! [`Config`]. Unknown keys are errors: a typo must never be silently ignored.

use std::path::Path;

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

/// Data plane settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Interfaces the home agent serves; the XDP program is attached to each.
    pub interfaces: Vec<String>,
    /// Attach mode for all interfaces.
    #[serde(default)]
    pub xdp_mode: XdpMode,
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
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
        if self.dataplane.interfaces.is_empty() {
            bail!("dataplane.interfaces: at least one interface is required");
        }
        let mut seen = std::collections::HashSet::new();
        for name in &self.dataplane.interfaces {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config() {
        let c = Config::from_toml("[dataplane]\ninterfaces = [\"eth0\"]\n", "t").unwrap();
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
