//! The daemon's configuration, in two syntaxes: the native TOML form (files ending in `.toml`)
//! and UMIP's `mip6d.conf` ([`umip`], everything else), both turned into the same [`Config`].
//! Unknown keys and directives are errors: a typo must never be silently ignored.

pub mod diagnostic;
pub mod ipsec_toml;
#[cfg(test)]
mod mutate;
pub mod setkey;
pub mod umip;

use std::{net::Ipv6Addr, path::Path};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The largest configuration (or key) file read: 1 MiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads a configuration file, bounded: only a regular file (a device such as `/dev/zero`, a
/// FIFO, a directory or a socket is refused; the open is non-blocking so a FIFO without a
/// writer cannot hang it) of at most [`MAX_FILE_BYTES`], counted while reading so a file
/// growing after the check cannot defeat it. The error says why, not which file: the caller
/// names it. An oversized buffer is wiped before it is dropped (key files come this way).
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read as _};
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    let t = meta.file_type();
    if !t.is_file() {
        let kind = if t.is_dir() {
            "a directory"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES + 1) as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        setkey::wipe_vec(&mut bytes);
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "it is larger than {MAX_FILE_BYTES} bytes (1 MiB), the limit for a configuration file"
            ),
        ));
    }
    Ok(bytes)
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native where the driver delivers what XDP transmits by itself, generic on veth (whose
    /// native mode drops every XDP_TX/redirected frame unless the peer runs XDP too).
    #[default]
    Auto,
    /// Native (driver) mode; if the driver has no native XDP, fall back to generic and say so.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

impl XdpMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

impl std::str::FromStr for XdpMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            _ => bail!("invalid XDP mode {s:?}: expected \"auto\", \"native\" or \"generic\""),
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

/// Map sizes of a mobile node configured from mip6d.conf.
const MOBILE_NODE_MAX_BINDINGS: u32 = 16;

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
    /// Attach mode for all interfaces (`auto`, `native`, `generic`).
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// Home agent: keep the data plane and the binding cache in pinned BPF maps, so that
    /// forwarding goes on while the daemon is dead or being replaced and a restarted daemon
    /// carries on with every binding (UMIP's `NonVolatileBindingCache`). Default on; a mobile
    /// node's state is always volatile.
    #[serde(default = "default_true")]
    pub persistent: bool,
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

/// What a binding ACL rule does (UMIP's `BindingAclPolicy ... allow|deny|<status>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AclVerdict {
    /// `"allow"` or `"deny"`.
    Word(AclWord),
    /// Answer with exactly this Binding Acknowledgement status.
    Status(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclWord {
    Allow,
    Deny,
}

impl AclVerdict {
    pub const ALLOW: Self = AclVerdict::Word(AclWord::Allow);
    pub const DENY: Self = AclVerdict::Word(AclWord::Deny);

    /// The BA status this verdict gives: 0 accepted, 129 administratively prohibited.
    pub fn status(self) -> u8 {
        match self {
            AclVerdict::Word(AclWord::Allow) => 0,
            AclVerdict::Word(AclWord::Deny) => 129,
            AclVerdict::Status(s) => s,
        }
    }
}

fn default_allow() -> AclVerdict {
    AclVerdict::ALLOW
}

/// One binding ACL rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub hoa: Ipv6Addr,
    /// Mobile network prefixes (`prefix/len`) this mobile router may register.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    pub action: AclVerdict,
}

/// IPsec between mobile nodes and the home agent (RFC 3776/4877).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpsecConfig {
    /// Protect signalling (and what the policy sets say) with ESP: UMIP's `UseMnHaIPsec`.
    #[serde(default)]
    pub use_mn_ha_ipsec: bool,
    /// UMIP's `KeyMngMobCapability` (the K bit).
    #[serde(default)]
    pub key_mng_mob_capability: bool,
    /// Number of `IPsecPolicySet`s (internal: never read from or printed to TOML).
    #[serde(skip)]
    pub policy_sets: usize,
    /// `[[ipsec.policy_set]]`: the `IPsecPolicySet`s in TOML form (a mip6d.conf's are shown
    /// here by `hagent config check`).
    #[serde(default, rename = "policy_set", skip_serializing_if = "Vec::is_empty")]
    pub policy_sets_toml: Vec<ipsec_toml::PolicySetToml>,
    /// The `IPsecPolicySet`s, from mip6d.conf or `policy_set`.
    #[serde(skip)]
    pub sets: Vec<umip::IpsecPolicySet>,
    /// `[[ipsec.sa]]`: manually keyed SAs in TOML form. Never printed back (keys).
    #[serde(default, rename = "sa", skip_serializing)]
    pub sas_toml: Vec<ipsec_toml::SaToml>,
    /// The SAs of `sa`, checked.
    #[serde(skip)]
    pub manual_sas: Vec<setkey::ManualSa>,
    /// Manually keyed SAs in setkey.conf syntax (`hagent run --setkey FILE`); keep the file
    /// readable by root only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sa_file: Option<std::path::PathBuf>,
}

/// Home agent settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HomeAgentConfig {
    /// The HA's addresses on its home links: tunnel endpoints and BU destinations. Empty: the
    /// global addresses configured on the served interfaces.
    #[serde(default)]
    pub addresses: Vec<Ipv6Addr>,
    /// Upper bound on a home registration's lifetime, in seconds (UMIP's HaMaxBindingLife).
    #[serde(default = "default_max_binding_life")]
    pub max_binding_lifetime: u32,
    /// Per-HoA rules (UMIP's BindingAclPolicy), first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclRule>,
    /// For HoAs no rule names (UMIP's DefaultBindingAclPolicy).
    #[serde(default = "default_allow")]
    pub default_acl: AclVerdict,
    /// Accept mobile routers (NEMO R flag; UMIP's HaAcceptMobRtr). Otherwise BA status 140.
    #[serde(default)]
    pub accept_mobile_routers: bool,
    /// Home prefixes served besides those of the interfaces' addresses (`prefix/len`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub home_prefixes: Vec<String>,
    /// Send a Binding Refresh Advice (at half the granted lifetime) in every BA.
    #[serde(default)]
    pub binding_refresh_advice: bool,
    /// Duplicate Address Detection for the HoA before accepting a new binding (RFC 6275
    /// §10.3.1). Turning it off is only for lab load tests.
    #[serde(default = "default_true")]
    pub dad: bool,
    /// Answer Mobile Prefix Solicitations from bound home addresses (RFC 6275 §10.6; UMIP's
    /// SendMobPfxAdvs). Unsolicited advertisements are not sent.
    #[serde(default = "default_true")]
    pub mobile_prefix_advertisements: bool,
    /// Bounds on the work new registrations may cause (`[home_agent.limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// How much work new registrations may queue: a home agent takes Binding Updates from
/// anyone, so every queue has a bound. Refreshes and moves of existing bindings and the HoAs
/// an ACL rule allows are never held back by these.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Duplicate Address Detection probes in flight at once (each lasts 1 s): the rate of
    /// new registrations with DAD is at most this per second. Beyond it, new HoAs' BUs are
    /// dropped (counted); their mobile nodes retransmit.
    pub max_pending_dad: u32,
    /// New registrations per second from one care-of /64 ...
    pub registrations_per_source: u32,
    /// ... and at once (the bucket's depth), e.g. every node behind one access router
    /// re-registering after an outage.
    pub registration_burst_per_source: u32,
    /// Sources tracked one by one; beyond them, the rest share one budget.
    pub tracked_sources: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_pending_dad: 8192,
            registrations_per_source: 100,
            registration_burst_per_source: 500,
            tracked_sources: 65536,
        }
    }
}

impl Default for HomeAgentConfig {
    fn default() -> Self {
        Self {
            addresses: vec![],
            max_binding_lifetime: default_max_binding_life(),
            acl: vec![],
            default_acl: AclVerdict::ALLOW,
            accept_mobile_routers: false,
            home_prefixes: vec![],
            binding_refresh_advice: false,
            dad: true,
            mobile_prefix_advertisements: true,
            limits: LimitsConfig::default(),
        }
    }
}

impl HomeAgentConfig {
    /// The home addresses an ACL rule allows: registrations of these skip the per-source and
    /// DAD bounds, and a slot of the cache is kept for each.
    pub fn allowed_hoas(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.acl
            .iter()
            .filter(|r| r.action == AclVerdict::ALLOW)
            .map(|r| r.hoa)
    }
}

/// A TOML syntax or schema error as `file:line:col: message` with the offending line — unless
/// that line may hold key material (`…key…`), which is never echoed.
fn toml_error(text: &str, origin: &str, e: &toml::de::Error) -> anyhow::Error {
    let Some(span) = e.span() else {
        return anyhow::anyhow!("{origin}: {}", e.message());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let shown = if line.to_ascii_lowercase().contains("key") {
        "(line not shown: it may hold key material)"
    } else {
        line
    };
    anyhow::anyhow!(
        "{origin}:{line_no}:{col}: {} (line {line_no})\n  | {shown}",
        e.message().trim_end()
    )
}

/// Parses `prefix/len`.
pub fn parse_prefix(s: &str) -> anyhow::Result<(Ipv6Addr, u8)> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("invalid prefix {s:?}: expected ADDRESS/LENGTH"))?;
    let a: Ipv6Addr = a
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid prefix {s:?}: {a:?} is not an IPv6 address"))?;
    let l: u8 = l
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| anyhow::anyhow!("invalid prefix {s:?}: length must be 0..=128"))?;
    Ok((a, l))
}

fn default_home_prefix_len() -> u8 {
    64
}
fn default_mn_lifetime() -> u32 {
    600
}

/// Mobile node settings (UMIP's MnHomeLink and friends).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeConfig {
    pub home_address: Ipv6Addr,
    /// Length of the home prefix (UMIP's `HomeAddress a/len`).
    #[serde(default = "default_home_prefix_len")]
    pub home_prefix_len: u8,
    pub home_agent: Ipv6Addr,
    /// The interface on the home link; default: the first in `dataplane.interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_interface: Option<String>,
    /// Lifetime to ask for, in seconds (UMIP's MnMaxHaBindingLife).
    #[serde(default = "default_mn_lifetime")]
    pub binding_lifetime: u32,
    /// First wait for the BA of a first registration, in milliseconds, doubled on every
    /// retransmission (RFC 6275 §11.8; UMIP's InitialBindackTimeoutFirstReg, default 1500).
    #[serde(default = "default_first_reg_ms")]
    pub bindack_timeout_first_reg_ms: u32,
    /// The same for a re-registration or a move (UMIP's InitialBindackTimeoutReReg, 1000).
    #[serde(default = "default_rereg_ms")]
    pub bindack_timeout_rereg_ms: u32,
}

fn default_first_reg_ms() -> u32 {
    1500
}
fn default_rereg_ms() -> u32 {
    1000
}

/// RFC 6275 §13: MAX_BINDACK_TIMEOUT, 32 s — no first wait may exceed it.
const MAX_BINDACK_TIMEOUT_MS: u32 = 32_000;

/// Most per-binding series one scrape carries unless `metrics.max_binding_series` says
/// otherwise: the first bindings in home address order; the rest are counted in
/// `hagent_binding_series_omitted`.
pub const DEFAULT_MAX_BINDING_SERIES: u32 = 1000;

/// Upper bound of `metrics.max_binding_series`: each binding is four series of about 100
/// bytes, read from the kernel on the event loop, so 100 000 is a 40 MB scrape.
pub const MAX_BINDING_SERIES: u32 = 100_000;

/// `[metrics]`: where the Prometheus/OpenMetrics endpoint listens and how many per-binding
/// series it carries.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `[addr]:port` to serve `/metrics` on; absent: no endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// Per-binding packet and byte series (hoa label) in one scrape; 0 turns them off.
    #[serde(default = "default_max_binding_series")]
    pub max_binding_series: u32,
}

fn default_max_binding_series() -> u32 {
    DEFAULT_MAX_BINDING_SERIES
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_binding_series: DEFAULT_MAX_BINDING_SERIES,
        }
    }
}

impl MetricsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
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
    #[serde(default)]
    pub ipsec: IpsecConfig,
    pub dataplane: DataplaneConfig,
    /// Append the log to this file instead of stderr (UMIP's DebugLogFile); absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<std::path::PathBuf>,
    /// Log verbosity (UMIP's DebugLevel 0..=10); `RUST_LOG` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_level: Option<u8>,
    /// The Prometheus/OpenMetrics endpoint (off unless `listen` is set).
    #[serde(default, skip_serializing_if = "MetricsConfig::is_default")]
    pub metrics: MetricsConfig,
    /// Warnings found while reading (deprecated spellings, ignored directives).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses a TOML configuration; errors name the line, column and offending text.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(text, origin, &e))?;
        config
            .resolve_ipsec(Path::new(origin))
            .with_context(|| origin.to_string())?;
        config.validate().with_context(|| origin.to_string())?;
        Ok(config)
    }

    /// RFC 3776 §4.1: BU and BA must be protected. A set that only protects payload leaves
    /// anyone free to move the binding — say so.
    fn warn_unprotected_signalling(&mut self) {
        if !self.ipsec.use_mn_ha_ipsec {
            return;
        }
        use umip::IpsecPolicyType as T;
        for set in &self.ipsec.sets {
            if !set
                .policies
                .iter()
                .any(|p| matches!(p.kind, T::HomeRegBinding | T::Mh | T::Any))
            {
                let hoas: Vec<String> = set
                    .home_addresses
                    .iter()
                    .map(|(a, _)| a.to_string())
                    .collect();
                self.warnings.push(format!(
                    "{}: the IPsecPolicySet for {} does not protect Binding Updates (no \
                     HomeRegBinding, Mh or any policy): anyone can move these bindings \
                     (RFC 3776 §4.1)",
                    set.loc,
                    hoas.join(", ")
                ));
            }
        }
    }

    /// `[[ipsec.policy_set]]` and `[[ipsec.sa]]` in the terms mip6d.conf and setkey.conf use.
    fn resolve_ipsec(&mut self, origin: &Path) -> anyhow::Result<()> {
        let i = &mut self.ipsec;
        for (n, s) in i.policy_sets_toml.iter().enumerate() {
            i.sets.push(s.to_umip(n, origin)?);
        }
        i.policy_sets = i.sets.len();
        for (n, sa) in i.sas_toml.iter().enumerate() {
            let m = sa.to_manual_sa(n, origin)?;
            self.warnings.extend(m.warnings());
            i.manual_sas.push(m);
        }
        if !i.use_mn_ha_ipsec && (!i.sets.is_empty() || !i.manual_sas.is_empty()) {
            self.warnings
                .push("ipsec: policy_set/sa have no effect: use_mn_ha_ipsec is false".to_string());
        }
        // Keys inline: the configuration file itself is a key file.
        if i.sas_toml
            .iter()
            .any(|s| s.encryption_key.is_some() || s.authentication_key.is_some())
            && origin.is_file()
            && let Err(e) = ipsec_toml::check_root_only(origin)
        {
            bail!("ipsec.sa: {e} (or move the keys to key files)");
        }
        self.warn_unprotected_signalling();
        Ok(())
    }

    /// The effective configuration as TOML, as `hagent config check` prints it: parsed again
    /// with [`from_toml`](Self::from_toml) it gives the same configuration, except for the
    /// keys of manually keyed SAs, which are never printed (a comment says how many).
    pub fn effective_toml(&self) -> anyhow::Result<String> {
        let mut out = toml::to_string_pretty(self)?;
        let n = self.ipsec.manual_sas.len();
        if n > 0 {
            out.push_str(&format!(
                "\n# {n} manually keyed SA{} not shown (key material)\n",
                if n == 1 { "" } else { "s" }
            ));
        }
        Ok(out)
    }

    /// Reads and parses the configuration file at `path`: TOML when it ends in `.toml`,
    /// UMIP's mip6d.conf syntax otherwise.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        if path.extension().is_some_and(|e| e == "toml") {
            let bytes = read_bounded(path)
                .with_context(|| format!("cannot read configuration file {}", path.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: the file is not valid UTF-8", path.display()))?;
            return Self::from_toml(&text, &path.display().to_string());
        }
        let u = umip::parse_file(path).map_err(|e| {
            // Every error, each with file:line:column, then the warnings.
            let mut msg = e.to_string();
            for w in &e.warnings {
                msg.push_str(&format!("\nwarning: {w}"));
            }
            anyhow::anyhow!(msg)
        })?;
        Self::from_umip(&u).with_context(|| path.display().to_string())
    }

    /// The same configuration as a mip6d.conf, in hagent's terms. Data plane settings, which
    /// mip6d.conf cannot express, take their defaults.
    pub fn from_umip(u: &umip::UmipConfig) -> anyhow::Result<Self> {
        use umip::{AclAction, NodeRole};
        let verdict = |a: AclAction| match a {
            AclAction::Allow => AclVerdict::ALLOW,
            AclAction::Deny => AclVerdict::DENY,
            AclAction::Status(s) => AclVerdict::Status(s),
        };
        let role = match u.node {
            NodeRole::Ha => Role::HomeAgent,
            NodeRole::Mn => Role::MobileNode,
            NodeRole::Cn => bail!(
                "NodeConfig CN (UMIP's default): hagent is a home agent or a mobile node; write \
                 `NodeConfig HA;` or `NodeConfig MN;`"
            ),
        };
        let mut interfaces: Vec<String> = u.interfaces.iter().map(|i| i.name.clone()).collect();
        if interfaces.is_empty() {
            // UMIP: no Interface directive means every interface but the loopback.
            interfaces = all_interfaces_but_loopback()?;
        }
        let mobile_node = match (role, u.home_links.first()) {
            (Role::MobileNode, Some(h)) => Some(MobileNodeConfig {
                home_address: h.home_address.0,
                home_prefix_len: h.home_address.1,
                home_agent: h.home_agent,
                home_interface: Some(h.name.clone()),
                binding_lifetime: u.mn_max_ha_binding_life.clamp(4, 262_140),
                bindack_timeout_first_reg_ms: u
                    .initial_bindack_timeout_first_reg
                    .as_millis()
                    .try_into()
                    .unwrap_or(u32::MAX),
                bindack_timeout_rereg_ms: u
                    .initial_bindack_timeout_re_reg
                    .as_millis()
                    .try_into()
                    .unwrap_or(u32::MAX),
            }),
            _ => None,
        };
        // UMIP masks host bits (the parser warns about them): so do we.
        let pfx = |&(a, l): &(Ipv6Addr, u8)| format!("{}/{l}", crate::system::network(a, l));
        let mut config = Config {
            role,
            home_agent: HomeAgentConfig {
                addresses: vec![],
                max_binding_lifetime: u.ha_max_binding_life,
                acl: u
                    .binding_acl
                    .iter()
                    .map(|e| AclRule {
                        hoa: e.hoa,
                        prefixes: e.mnps.iter().map(pfx).collect(),
                        action: verdict(e.action),
                    })
                    .collect(),
                default_acl: verdict(u.default_acl),
                accept_mobile_routers: u.ha_accept_mob_rtr,
                home_prefixes: u.ha_served_prefixes.iter().map(pfx).collect(),
                binding_refresh_advice: false,
                dad: true,
                mobile_prefix_advertisements: u.send_mob_pfx_advs,
                limits: LimitsConfig::default(),
            },
            mobile_node,
            ipsec: IpsecConfig {
                use_mn_ha_ipsec: u.use_mn_ha_ipsec,
                key_mng_mob_capability: u.key_mng_mob_capability,
                policy_sets: u.ipsec_policy_sets.len(),
                policy_sets_toml: u
                    .ipsec_policy_sets
                    .iter()
                    .map(ipsec_toml::PolicySetToml::from_umip)
                    .collect(),
                sets: u.ipsec_policy_sets.clone(),
                sas_toml: Vec::new(),
                manual_sas: Vec::new(),
                sa_file: None,
            },
            dataplane: DataplaneConfig {
                interfaces,
                xdp_mode: XdpMode::Auto,
                // A home agent survives restarts unless told otherwise; UMIP's directive
                // decides when present.
                persistent: u
                    .non_volatile_binding_cache
                    .unwrap_or(role == Role::HomeAgent),
                // A mobile node holds one binding per home address, not a million: its maps
                // stay small (the home agent's default preallocates ~100 MB).
                max_bindings: match role {
                    Role::MobileNode => MOBILE_NODE_MAX_BINDINGS,
                    Role::HomeAgent => default_max_bindings(),
                },
                max_prefixes: match role {
                    Role::MobileNode => MOBILE_NODE_MAX_BINDINGS,
                    Role::HomeAgent => default_max_prefixes(),
                },
                nexthop_cache: true,
                outer_hop_limit: default_hop_limit(),
                icmp_rate: default_icmp_rate(),
            },
            log_file: u.debug_log_file.clone(),
            debug_level: Some(u.debug_level),
            metrics: MetricsConfig::default(),
            warnings: u.warnings.iter().map(|w| w.to_string()).collect(),
        };
        config.warn_unprotected_signalling();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.metrics.max_binding_series > MAX_BINDING_SERIES {
            bail!(
                "metrics.max_binding_series: {} is more than {MAX_BINDING_SERIES}",
                self.metrics.max_binding_series
            );
        }
        if let Some(f) = &self.log_file
            && !f.is_absolute()
        {
            bail!(
                "log_file (DebugLogFile): {:?} is not an absolute path",
                f.display().to_string()
            );
        }
        if let Some(m) = &self.mobile_node {
            if m.home_agent.is_unspecified() {
                bail!(
                    "mobile_node.home_agent (HomeAgentAddress in MnHomeLink): not set. UMIP would \
                     look for one with Dynamic Home Agent Address Discovery (RFC 6275 §11.4.1), \
                     which hagent does not do yet: name the home agent's address"
                );
            }
            if !is_global_unicast(&m.home_agent) {
                bail!(
                    "mobile_node.home_agent (HomeAgentAddress): {} is not a global unicast address",
                    m.home_agent
                );
            }
            for (name, v) in [
                (
                    "bindack_timeout_first_reg_ms",
                    m.bindack_timeout_first_reg_ms,
                ),
                ("bindack_timeout_rereg_ms", m.bindack_timeout_rereg_ms),
            ] {
                if !(100..=MAX_BINDACK_TIMEOUT_MS).contains(&v) {
                    bail!(
                        "mobile_node.{name} (InitialBindackTimeout…): {v} ms is out of range: \
                         100 to {MAX_BINDACK_TIMEOUT_MS} ms (MAX_BINDACK_TIMEOUT, RFC 6275 §13)"
                    );
                }
            }
        }
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
        let life = self.home_agent.max_binding_lifetime;
        if life > 262_140 {
            bail!(
                "home_agent.max_binding_lifetime (HaMaxBindingLife): {life} s exceeds the \
                 protocol's maximum of 262140 s"
            );
        }
        if life < 4 && self.role == Role::HomeAgent {
            bail!(
                "home_agent.max_binding_lifetime (HaMaxBindingLife): {life} s grants no \
                 binding at all (lifetimes count in 4 s units); the least is 4"
            );
        }
        for r in &self.home_agent.acl {
            for p in &r.prefixes {
                let (a, l) = parse_prefix(p).context("home_agent.acl.prefixes")?;
                crate::validate::well_formed_prefix(&a, l).map_err(|e| {
                    anyhow::anyhow!(
                        "home_agent.acl.prefixes (the MNPs of BindingAclPolicy {}): {p} {e}",
                        r.hoa
                    )
                })?;
            }
        }
        for p in &self.home_agent.home_prefixes {
            let (a, l) = parse_prefix(p).context("home_agent.home_prefixes")?;
            crate::validate::well_formed_prefix(&a, l).map_err(|e| {
                anyhow::anyhow!("home_agent.home_prefixes (HaServedPrefix): {p} {e}")
            })?;
        }
        let lim = &self.home_agent.limits;
        for (name, v, max) in [
            ("max_pending_dad", lim.max_pending_dad, 1 << 20),
            (
                "registrations_per_source",
                lim.registrations_per_source,
                1 << 24,
            ),
            (
                "registration_burst_per_source",
                lim.registration_burst_per_source,
                1 << 24,
            ),
            ("tracked_sources", lim.tracked_sources, 1 << 22),
        ] {
            if v == 0 || v > max {
                bail!("home_agent.limits.{name}: {v} is outside 1..={max}");
            }
        }
        if self.debug_level.is_some_and(|d| d > 10) {
            bail!("debug_level: must be 0..=10");
        }
        match (self.role, &self.mobile_node) {
            (Role::MobileNode, None) => {
                bail!("mobile_node: role = \"mobile_node\" needs a [mobile_node] section")
            }
            _ => Ok(()),
        }
    }
}

/// Every interface but the loopback, as UMIP serves when no `Interface` is given.
fn all_interfaces_but_loopback() -> anyhow::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/sys/class/net").context("listing /sys/class/net")? {
        let name = e?.file_name().to_string_lossy().to_string();
        if name != "lo" {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
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

    /// `config check` prints what the file means: parsed again, that text is the same
    /// configuration (RFC-level fields and IPsec policy sets included), for every shipped
    /// example and test fixture, from both syntaxes.
    #[test]
    fn the_effective_configuration_round_trips() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut checked = 0;
        for dir in ["tests/fixtures", "packaging/etc"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if !matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("conf" | "toml")
                ) {
                    continue;
                }
                // The seed's HA file carries the talk's typo (`coo1`), fixed as the lab does.
                let text = std::fs::read_to_string(&path)
                    .unwrap()
                    .replace("coo1", "c001");
                let tmp = std::env::temp_dir().join(format!(
                    "hagent-roundtrip-{}-{}",
                    std::process::id(),
                    path.file_name().unwrap().to_string_lossy()
                ));
                std::fs::write(&tmp, text).unwrap();
                let first = Config::load(&tmp);
                let _ = std::fs::remove_file(&tmp);
                let first = first.unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                let printed = first.effective_toml().unwrap();
                assert!(
                    !printed.contains("policy_sets ="),
                    "internal field: {printed}"
                );
                let again = Config::from_toml(&printed, "printed")
                    .unwrap_or_else(|e| panic!("{}: {e:#}\n{printed}", path.display()));
                let strip = |mut c: Config| {
                    c.warnings.clear();
                    // Source locations differ (file vs printed text); the TOML form is compared.
                    c.ipsec.sets.clear();
                    c
                };
                assert_eq!(strip(again), strip(first), "{}:\n{printed}", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 5, "only {checked} files checked");
    }

    #[test]
    fn toml_setkey_and_key_file_reads_are_bounded_regular_files() {
        let dir = std::env::temp_dir().join(format!("hagent-bounded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d.toml")).unwrap();
        let fifo = dir.join("key.fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
        // A FIFO: the open must not wait for a writer, so the check runs in a thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(
                ipsec_toml::SaToml {
                    src: "2001:db8::1".parse().unwrap(),
                    dst: "2001:db8::2".parse().unwrap(),
                    spi: 1000,
                    reqid: 10,
                    mode: None,
                    encryption: "aes-gcm-16".into(),
                    encryption_key: None,
                    encryption_key_file: Some(f),
                    authentication: None,
                    authentication_key: None,
                    authentication_key_file: None,
                }
                .to_manual_sa(0, Path::new("t.toml"))
                .map(|_| ())
                .map_err(|e| format!("{e:#}")),
            );
        });
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO key file did not finish within 5 s")
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "ipsec.sa[0].encryption_key_file: cannot read {}: it is a FIFO, not a regular file",
                fifo.display()
            )
        );
        let e = format!("{:#}", Config::load(&dir.join("d.toml")).unwrap_err());
        assert_eq!(
            e,
            format!(
                "cannot read configuration file {}: it is a directory, not a regular file",
                dir.join("d.toml").display()
            )
        );
        let e = format!("{:#}", Config::load(&big).unwrap_err());
        assert!(e.contains("it is larger than 1048576 bytes (1 MiB)"), "{e}");
        let e = setkey::parse_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero")
                && e.contains("cannot read the file: it is a character device, not a regular file"),
            "{e}"
        );
        let e = setkey::parse_file(&big).unwrap_err().to_string();
        assert!(e.contains("it is larger than 1048576 bytes (1 MiB)"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        assert_eq!(c.dataplane.xdp_mode, XdpMode::Auto);
    }

    #[test]
    fn a_mobile_node_without_a_home_agent_address_is_refused() {
        let dir = std::env::temp_dir().join(format!("hagent-noha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mn.conf");
        std::fs::write(
            &conf,
            "NodeConfig MN;\nInterface \"eth0\";\nMnHomeLink \"eth0\" {\n  HomeAddress 2001:db8:bee5::dead:face/64;\n}\n",
        )
        .unwrap();
        let e = format!("{:#}", Config::load(&conf).unwrap_err());
        assert!(e.contains("HomeAgentAddress"), "{e}");
        assert!(e.contains("not set"), "{e}");
        let toml = "role = \"mobile_node\"\n[mobile_node]\nhome_address = \"2001:db8:bee5::dead:face\"\nhome_agent = \"fe80::1\"\n[dataplane]\ninterfaces = [\"eth0\"]\n";
        let e = format!("{:#}", Config::from_toml(toml, "mn.toml").unwrap_err());
        assert!(e.contains("fe80::1 is not a global unicast address"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metrics_are_off_by_default_and_bounded() {
        let base =
            "[home_agent]\naddresses = [\"2001:db8::1\"]\n[dataplane]\ninterfaces = [\"eth0\"]\n";
        let c = Config::from_toml(base, "t").unwrap();
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.metrics.max_binding_series, DEFAULT_MAX_BINDING_SERIES);
        assert!(!c.effective_toml().unwrap().contains("[metrics]"));
        let on = format!("{base}[metrics]\nlisten = \"[::1]:9725\"\nmax_binding_series = 0\n");
        let c = Config::from_toml(&on, "t").unwrap();
        assert_eq!(c.metrics.listen, Some("[::1]:9725".parse().unwrap()));
        assert_eq!(c.metrics.max_binding_series, 0);
        let printed = c.effective_toml().unwrap();
        assert_eq!(
            Config::from_toml(&printed, "printed").unwrap().metrics,
            c.metrics
        );
        for (bad, says) in [
            ("listen = \"localhost:9725\"", "listen"),
            ("listen = \"[::1]\"", "listen"),
            (
                "max_binding_series = 100001",
                "metrics.max_binding_series: 100001 is more than 100000",
            ),
            ("port = 9725", "port"),
        ] {
            let e = Config::from_toml(&format!("{base}[metrics]\n{bad}\n"), "m.toml").unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains(says), "{bad}: {e}");
        }
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

    #[test]
    fn a_policy_set_that_leaves_bus_unprotected_is_flagged_rfc3776_4_1() {
        let conf = |policies: &str| {
            format!(
                "NodeConfig HA;\nInterface \"eth0\";\nUseMnHaIPsec enabled;\nIPsecPolicySet {{\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n{policies}}}\n"
            )
        };
        let warns = |text: &str| {
            let u = umip::parse_str(text, Path::new("t.conf")).unwrap();
            Config::from_umip(&u)
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.contains("does not protect Binding Updates"))
        };
        assert!(warns(&conf("  IPsecPolicy TunnelPayload UseESP 11;\n")));
        assert!(!warns(&conf(
            "  IPsecPolicy HomeRegBinding UseESP 10;\n  IPsecPolicy TunnelPayload UseESP 11;\n"
        )));
    }

    #[test]
    fn served_prefixes_and_lifetimes_that_serve_everything_or_nothing_are_errors() {
        let umip = |extra: &str| {
            let text = format!("NodeConfig HA;\nInterface \"eth0\";\n{extra}\n");
            let u = umip::parse_str(&text, Path::new("t.conf")).unwrap();
            Config::from_umip(&u)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        };
        let e = umip("HaServedPrefix ::/0;").unwrap_err();
        assert!(e.contains("HaServedPrefix") && e.contains("::/0"), "{e}");
        let e = umip("HaServedPrefix 2000::/3;").unwrap_err();
        assert!(e.contains("2000::/3"), "{e}");
        assert!(umip("HaServedPrefix 2001:db8:100::/48;").is_ok());
        // UMIP masks host bits (and its parser warns): so do we.
        assert!(umip("HaServedPrefix 2001:db8:100::1/48;").is_ok());
        let e = umip("HaMaxBindingLife 0;").unwrap_err();
        assert!(e.contains("HaMaxBindingLife") && e.contains("0 s"), "{e}");
        let e = format!(
            "{:#}",
            Config::from_toml(
                "[home_agent]\nhome_prefixes = [\"::/0\"]\n[dataplane]\ninterfaces = [\"eth0\"]\n",
                "t"
            )
            .unwrap_err()
        );
        assert!(
            e.contains("home_agent.home_prefixes") && e.contains("::/0"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Config::from_toml(
                "[home_agent.limits]\nmax_pending_dad = 0\n[dataplane]\ninterfaces = [\"eth0\"]\n",
                "t"
            )
            .unwrap_err()
        );
        assert!(e.contains("home_agent.limits.max_pending_dad"), "{e}");
    }

    #[test]
    fn toml_errors_never_echo_a_key() {
        let text = "[dataplane]\ninterfaces = [\"eth0\"]\n\n[ipsec]\nuse_mn_ha_ipsec = true\n\n[[ipsec.sa]]\nsrc = \"2001:db8::1\"\ndst = \"2001:db8::2\"\nspi = 4096\nencryption = \"aes-gcm-16\"\nencrytion_key = \"0x00112233445566778899aabbccddeeff00112233\"\n";
        let e = format!("{:#}", Config::from_toml(text, "f.toml").unwrap_err());
        assert!(e.contains("f.toml:12:"), "{e}");
        assert!(
            e.contains("encrytion_key"),
            "the message names the field: {e}"
        );
        assert!(!e.contains("00112233"), "{e}");
    }
}
