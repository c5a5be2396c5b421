//! The TOML form of what mip6d.conf's `IPsecPolicySet` and setkey.conf's `add` express:
//!
//! ```toml
//! [ipsec]
//! use_mn_ha_ipsec = true
//!
//! [[ipsec.policy_set]]
//! home_agent = "2001:db8:bee5::c001:babe"
//! home_addresses = ["2001:db8:bee5::dead:face/64"]
//! policies = [
//!   { type = "HomeRegBinding", reqid = 10 },
//!   { type = "TunnelPayload", reqid_to_ha = 11, reqid_to_mn = 12 },
//! ]
//!
//! [[ipsec.sa]]
//! src = "2001:db8:bee5::dead:face"
//! dst = "2001:db8:bee5::c001:babe"
//! spi = 1000
//! reqid = 10
//! mode = "transport"
//! encryption = "aes-gcm-16"
//! encryption_key_file = "/etc/hagent/keys/bu.key"
//! ```
//!
//! Keys are hex (`0x…`), inline or — better — in a file of their own that only root may read:
//! a key file readable by group or others is refused. SAs are never printed back (key
//! material), policy sets are.

use std::{
    net::Ipv6Addr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{
    parse_prefix,
    setkey::{self, IpsecProto as SaProto, Key, ManualSa, ManualSaParts, SaMode},
    umip::{self, IpsecPolicy, IpsecPolicySet, IpsecPolicyType, IpsecProto, Location},
};

/// `[[ipsec.policy_set]]`: UMIP's `IPsecPolicySet`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicySetToml {
    pub home_agent: Ipv6Addr,
    /// `ADDRESS/LENGTH` (or a bare address, /128).
    pub home_addresses: Vec<String>,
    pub policies: Vec<PolicyToml>,
}

/// One `IPsecPolicy TYPE UseESP REQID [REQID];`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyToml {
    /// UMIP's type name: HomeRegBinding, Mh, MobPfxDisc, ICMP, any, TunnelHomeTesting,
    /// TunnelMh, TunnelPayload.
    #[serde(rename = "type")]
    pub kind: String,
    /// Both directions' reqid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reqid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reqid_to_ha: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reqid_to_mn: Option<u32>,
    /// mip6d.conf's trailing `allow`/`deny`/`block`: "allow" (the default) or "block" ("deny"
    /// is accepted for it, as UMIP installs both as a block policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl PolicySetToml {
    /// The set in mip6d.conf's terms; errors name the TOML field.
    pub fn to_umip(&self, index: usize, origin: &Path) -> anyhow::Result<IpsecPolicySet> {
        let at = format!("ipsec.policy_set[{index}]");
        let loc = Location {
            file: origin.to_path_buf(),
            line: 0,
            column: 0,
        };
        if self.home_addresses.is_empty() {
            bail!("{at}.home_addresses: at least one home address is required");
        }
        let home_addresses = self
            .home_addresses
            .iter()
            .map(|a| {
                if a.contains('/') {
                    parse_prefix(a)
                } else {
                    a.parse::<Ipv6Addr>()
                        .map(|a| (a, 128))
                        .map_err(|_| anyhow!("invalid IPv6 address {a:?}"))
                }
                .with_context(|| format!("{at}.home_addresses"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if self.policies.is_empty() {
            bail!("{at}.policies: at least one policy is required");
        }
        let mut policies: Vec<IpsecPolicy> = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = format!("{at}.policies[{i}]");
            let kind = IpsecPolicyType::ALL
                .into_iter()
                .find(|t| t.as_str().eq_ignore_ascii_case(&p.kind))
                .ok_or_else(|| {
                    anyhow!(
                        "{at}.type: {:?} is not an IPsec policy type (one of: {})",
                        p.kind,
                        IpsecPolicyType::ALL.map(|t| t.as_str()).join(", ")
                    )
                })?;
            if policies.iter().any(|q| q.kind == kind) {
                bail!("{at}.type: {kind} is listed twice");
            }
            let (to_ha, to_mn) = match (p.reqid, p.reqid_to_ha, p.reqid_to_mn) {
                (Some(r), None, None) => (r, r),
                (None, Some(h), Some(m)) => (h, m),
                (None, Some(h), None) => (h, h),
                (None, None, None) => {
                    bail!("{at}: a reqid is required (reqid, or reqid_to_ha and reqid_to_mn)")
                }
                _ => bail!("{at}: give either reqid or reqid_to_ha/reqid_to_mn, not both"),
            };
            let allow = match p.action.as_deref() {
                None | Some("allow") => true,
                Some("block" | "deny") => false,
                Some(other) => bail!(
                    "{at}.action: {other:?} is not \"allow\" or \"block\" (\"deny\" means block)"
                ),
            };
            for (field, r) in [("reqid_to_ha", to_ha), ("reqid_to_mn", to_mn)] {
                setkey::check_optional_reqid(r).map_err(|e| anyhow!("{at}.{field}: {e}"))?;
            }
            policies.push(IpsecPolicy {
                kind,
                protocols: vec![IpsecProto::Esp],
                reqid_to_ha: to_ha,
                reqid_to_mn: to_mn,
                allow,
                loc: loc.clone(),
            });
        }
        Ok(IpsecPolicySet {
            home_agent: self.home_agent,
            home_addresses,
            policies,
            loc,
        })
    }

    /// A mip6d.conf set in TOML form (for `hagent config check`).
    pub fn from_umip(set: &IpsecPolicySet) -> Self {
        Self {
            home_agent: set.home_agent,
            home_addresses: set
                .home_addresses
                .iter()
                .map(|(a, l)| format!("{a}/{l}"))
                .collect(),
            policies: set
                .policies
                .iter()
                .map(|p| {
                    let one = p.reqid_to_mn == 0 || p.reqid_to_mn == p.reqid_to_ha;
                    PolicyToml {
                        kind: p.kind.as_str().to_string(),
                        reqid: one.then_some(p.reqid_to_ha),
                        reqid_to_ha: (!one).then_some(p.reqid_to_ha),
                        reqid_to_mn: (!one).then_some(p.reqid_to_mn),
                        action: (!p.allow).then(|| "block".to_string()),
                    }
                })
                .collect(),
        }
    }
}

/// `[[ipsec.sa]]`: one manually keyed ESP SA, setkey's `add SRC DST esp SPI -u REQID -m MODE
/// -E ALG KEY -A ALG KEY;`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SaToml {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub spi: u32,
    #[serde(default)]
    pub reqid: u32,
    /// "transport" (default) or "tunnel".
    #[serde(default)]
    pub mode: Option<String>,
    /// setkey's name (aes-gcm-16, aes-cbc, ...); AES-GCM needs no `authentication`.
    pub encryption: String,
    #[serde(default)]
    pub encryption_key: Option<String>,
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
    #[serde(default)]
    pub authentication: Option<String>,
    #[serde(default)]
    pub authentication_key: Option<String>,
    #[serde(default)]
    pub authentication_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SaToml {
    // Never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SaToml {{ {} → {} spi {:#x} reqid {} }}",
            self.src, self.dst, self.spi, self.reqid
        )
    }
}

impl Drop for SaToml {
    fn drop(&mut self) {
        for k in [&mut self.encryption_key, &mut self.authentication_key]
            .into_iter()
            .flatten()
        {
            setkey::wipe_string(k);
        }
    }
}

impl SaToml {
    /// The SA, with the setkey parser's checks; errors name the field, never a key.
    pub fn to_manual_sa(&self, index: usize, origin: &Path) -> anyhow::Result<ManualSa> {
        let at = format!("ipsec.sa[{index}]");
        let mode = match self.mode.as_deref().unwrap_or("transport") {
            "transport" => SaMode::Transport,
            "tunnel" => SaMode::Tunnel,
            other => bail!("{at}.mode: {other:?} is not \"transport\" or \"tunnel\""),
        };
        let encryption_key = key(
            &at,
            "encryption",
            self.encryption_key.as_deref(),
            self.encryption_key_file.as_deref(),
        )?;
        let authentication = match &self.authentication {
            Some(name) => Some((
                name.as_str(),
                key(
                    &at,
                    "authentication",
                    self.authentication_key.as_deref(),
                    self.authentication_key_file.as_deref(),
                )?,
            )),
            None if self.authentication_key.is_some() || self.authentication_key_file.is_some() => {
                bail!("{at}: an authentication key without `authentication` (the algorithm)")
            }
            None => None,
        };
        ManualSa::from_parts(ManualSaParts {
            src: self.src,
            dst: self.dst,
            proto: SaProto::Esp,
            spi: self.spi,
            mode,
            reqid: self.reqid,
            replay_window: 0,
            encryption: Some((self.encryption.as_str(), encryption_key)),
            authentication,
            lifetime: setkey::Lifetime::default(),
            loc: umip::Location {
                file: origin.to_path_buf(),
                line: 0,
                column: 0,
            },
        })
        .map_err(|e| anyhow!("{at}: {e}"))
    }
}

/// A key given inline or in a file (exactly one of them).
fn key(at: &str, what: &str, inline: Option<&str>, file: Option<&Path>) -> anyhow::Result<Key> {
    match (inline, file) {
        (Some(k), None) => Key::from_hex(k.trim()).map_err(|e| anyhow!("{at}.{what}_key: {e}")),
        (None, Some(path)) => {
            check_root_only(path).map_err(|e| anyhow!("{at}.{what}_key_file: {e}"))?;
            let bytes = super::read_bounded(path)
                .with_context(|| format!("{at}.{what}_key_file: cannot read {}", path.display()))?;
            let mut text = String::from_utf8(bytes).map_err(|e| {
                setkey::wipe_vec(&mut e.into_bytes());
                anyhow!("{at}.{what}_key_file {}: not valid UTF-8", path.display())
            })?;
            let k = Key::from_hex(text.trim())
                .map_err(|e| anyhow!("{at}.{what}_key_file {}: {e}", path.display()));
            setkey::wipe_string(&mut text);
            k
        }
        (None, None) => bail!("{at}: {what}_key or {what}_key_file is required"),
        (Some(_), Some(_)) => bail!("{at}: give {what}_key or {what}_key_file, not both"),
    }
}

/// Key material must be readable by its owner only, and that owner root (or whoever runs
/// hagent): otherwise anyone on the box can read the keys.
pub fn check_root_only(path: &Path) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(mode) = setkey::exposed_mode(&m) {
        return Err(format!(
            "{} holds keys but is readable by others (mode {mode:03o}): chmod 600 it",
            path.display()
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != 0 && m.uid() != me {
        return Err(format!(
            "{} holds keys but belongs to uid {}: chown root it",
            path.display(),
            m.uid()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn set(toml_text: &str) -> anyhow::Result<IpsecPolicySet> {
        let s: PolicySetToml = toml::from_str(toml_text)?;
        s.to_umip(0, Path::new("t.toml"))
    }

    #[test]
    fn a_policy_action_is_allow_block_or_deny_and_printed_back() {
        let s = set(r#"
home_agent = "2001:db8:bee5::c001:babe"
home_addresses = ["2001:db8:bee5::dead:face/64"]
policies = [ { type = "Mh", reqid = 10, action = "block" }, { type = "ICMP", reqid = 11, action = "deny" }, { type = "any", reqid = 12, action = "allow" }, { type = "TunnelPayload", reqid = 13 } ]
"#)
        .unwrap();
        let allow: Vec<bool> = s.policies.iter().map(|p| p.allow).collect();
        assert_eq!(allow, [false, false, true, true]);
        let back = PolicySetToml::from_umip(&s);
        let actions: Vec<Option<&str>> =
            back.policies.iter().map(|p| p.action.as_deref()).collect();
        assert_eq!(actions, [Some("block"), Some("block"), None, None]);
        let printed = toml::to_string(&back).unwrap();
        assert!(printed.contains(r#"action = "block""#), "{printed}");
        assert_eq!(
            back.to_umip(0, Path::new("t.toml")).unwrap().policies,
            s.policies
        );
        // From mip6d.conf too: deny and block both print as block.
        let conf = "NodeConfig HA;\nInterface \"eth0\";\nUseMnHaIPsec enabled;\nIPsecPolicySet {\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n  IPsecPolicy Mh UseESP 10 deny;\n  IPsecPolicy ICMP UseESP 11 block;\n  IPsecPolicy any UseESP 12 allow;\n}\n";
        let u = umip::parse_str(conf, Path::new("t.conf")).unwrap();
        let back = PolicySetToml::from_umip(&u.ipsec_policy_sets[0]);
        let actions: Vec<Option<&str>> =
            back.policies.iter().map(|p| p.action.as_deref()).collect();
        assert_eq!(actions, [Some("block"), Some("block"), None]);
        let e = set(r#"
home_agent = "2001:db8:bee5::c001:babe"
home_addresses = ["2001:db8:bee5::dead:face/64"]
policies = [ { type = "Mh", reqid = 10, action = "drop" } ]
"#)
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ipsec.policy_set[0].policies[0].action") && e.contains("\"drop\""),
            "{e}"
        );
    }

    #[test]
    fn a_policy_set_reads_like_mip6d_conf() {
        let s = set(r#"
home_agent = "2001:db8:bee5::c001:babe"
home_addresses = ["2001:db8:bee5::dead:face/64"]
policies = [ { type = "HomeRegBinding", reqid = 10 }, { type = "tunnelpayload", reqid_to_ha = 11, reqid_to_mn = 12 } ]
"#)
        .unwrap();
        assert_eq!(s.policies[0].kind, IpsecPolicyType::HomeRegBinding);
        assert_eq!(
            (s.policies[0].reqid_to_ha, s.policies[0].reqid_to_mn),
            (10, 10)
        );
        assert_eq!(s.policies[1].kind, IpsecPolicyType::TunnelPayload);
        assert_eq!(
            (s.policies[1].reqid_to_ha, s.policies[1].reqid_to_mn),
            (11, 12)
        );
        // And back.
        let back = PolicySetToml::from_umip(&s);
        assert_eq!(back.policies[1].reqid_to_mn, Some(12));
        assert_eq!(
            back.to_umip(0, Path::new("t.toml")).unwrap().policies,
            s.policies
        );
    }

    #[test]
    fn policy_set_errors_name_the_field() {
        let base = "home_agent = \"2001:db8::1\"\nhome_addresses = [\"2001:db8::2/64\"]\n";
        let e = set(&format!(
            "{base}policies = [ {{ type = \"Foo\", reqid = 1 }} ]"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("ipsec.policy_set[0].policies[0].type: \"Foo\""),
            "{e}"
        );
        let e = set(&format!("{base}policies = [ {{ type = \"Mh\" }} ]")).unwrap_err();
        assert!(e.to_string().contains("a reqid is required"), "{e}");
        let e = set(&format!(
            "{base}policies = [ {{ type = \"Mh\", reqid = 1, reqid_to_ha = 2 }} ]"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = set("home_agent = \"2001:db8::1\"\nhome_addresses = [\"nope/64\"]\npolicies = []")
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("ipsec.policy_set[0].home_addresses"),
            "{e:#}"
        );
    }

    #[test]
    fn sas_take_keys_inline_or_from_root_only_files_and_never_show_them() {
        let dir = std::env::temp_dir().join(format!("hagent-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("enc.key");
        std::fs::write(&key_file, "0x00112233445566778899aabbccddeeff00112233\n").unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "src = \"2001:db8::1\"\ndst = \"2001:db8::2\"\nspi = 4096\nreqid = 10\nmode = \"tunnel\"\nencryption = \"aes-gcm-16\"\nencryption_key_file = \"{}\"\n",
            key_file.display()
        );
        let sa: SaToml = toml::from_str(&text).unwrap();
        let m = sa.to_manual_sa(0, Path::new("t.toml")).unwrap();
        assert_eq!((m.spi, m.reqid, m.mode), (4096, 10, SaMode::Tunnel));
        assert_eq!(m.encryption.as_ref().unwrap().key.len(), 20);
        assert!(!format!("{sa:?}").contains("0011"));
        // Readable by others: refused, and the message says what to do.
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = sa
            .to_manual_sa(0, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ipsec.sa[0].encryption_key_file") && e.contains("chmod 600"),
            "{e}"
        );
        // Inline, with a key of the wrong length for the algorithm: named, not shown.
        let text = "src = \"2001:db8::1\"\ndst = \"2001:db8::2\"\nspi = 4096\nencryption = \"aes-cbc\"\nencryption_key = \"0x0011\"\nauthentication = \"hmac-sha256\"\nauthentication_key = \"0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n";
        let sa: SaToml = toml::from_str(text).unwrap();
        let e = sa
            .to_manual_sa(3, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ipsec.sa[3]") && !e.contains("0011"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
