//! Reader for UMIP's `mip6d.conf`.
//!
//! Operators who move from UMIP's `mip6d` bring their `mip6d.conf`. This module reads that
//! C-like language (`Keyword value;`, `"strings"`, `# comments`, `{ blocks }`) into a typed
//! [`UmipConfig`] with UMIP's defaults. It is a hand-written lexer and recursive-descent parser.
//! It only reads files: it does not check interfaces, load modules or touch the kernel.
//!
//! Principles:
//! * Nothing is silently ignored. Unknown directives, bad values and overlapping definitions are
//!   errors, and every [`Diagnostic`] gives `file:line:column`, the offending text and, where
//!   possible, a `help` hint. The parser recovers after an error, so one run reports all of them.
//! * Spellings that circulate in tutorials (the German UMIP talk our seed config comes from) are
//!   accepted **with a warning naming UMIP's keyword**: `BindAclPolicy`, `DefaultBindPolicy`,
//!   `IPSecPolicy`/`IPSecPolicySet`, and the policy type `Mn` (UMIP: `Mh`). Warnings also cover
//!   typographic quotes (`„eth0“`) and no-break spaces left over from copying text out of slides.
//! * Keywords are case-sensitive, as in UMIP. A near miss gets a "did you mean" hint.
//!
//! Deliberate differences from UMIP: booleans also accept `on`/`off`. Decimal settings also
//! accept integers. `include` may be followed by `;`. A missing literal include file is an error
//! (UMIP only warns); a wildcard pattern that matches nothing is a warning, as in UMIP.
//! `UsePolicyModule` is refused (no plugins).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{closest, homoglyph_help};

/// How deep `include` may nest: the top file is level 0, and an include from level 5 is refused.
/// UMIP uses the same limit (`MAX_INCLUDE_DEPTH`).
pub const MAX_INCLUDE_DEPTH: usize = 5;
/// The longest home registration lifetime in seconds: `0xffff << 2`, UMIP's
/// `MAX_BINDING_LIFETIME`. It is the cap for `HaMaxBindingLife` and `MnMaxHaBindingLife`.
pub const MAX_BINDING_LIFETIME: u32 = 262_140;
/// The longest correspondent-node binding lifetime in seconds, UMIP's `MAX_RR_BINDING_LIFETIME`.
pub const MAX_RR_BINDING_LIFETIME: u32 = 420;
/// Highest `DebugLevel`.
pub const MAX_DEBUG_LEVEL: u8 = 10;
/// Highest (least preferred) `MnIfPreference`. It is also the default.
pub const MAX_MN_IF_PREFERENCE: u8 = 10;
/// After this many errors the parser stops.
const MAX_ERRORS: usize = 50;

/// An IPv6 prefix, or an address with its prefix length, as written (`addr/len`).
pub type Prefix = (Ipv6Addr, u8);

// ---------------------------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------------------------

/// Where something was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: u32,
    /// 1-based, counted in characters (a tab or a no-break space is one column).
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One error or warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file (for example, it cannot be read).
    pub line: u32,
    /// 1-based; 0 together with `line == 0`.
    pub column: u32,
    pub message: String,
    /// An optional hint on how to fix it. It is not part of `Display`; [`ConfigError`] prints it on
    /// the next line.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(loc: &Location, message: impl Into<String>) -> Self {
        Self {
            file: loc.file.clone(),
            line: loc.line,
            column: loc.column,
            message: message.into(),
            help: None,
        }
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

/// `file:line:col: message`, or `file: message` for whole-file problems (`line == 0`).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Why a configuration was rejected. It holds every error found, in source order where
/// possible, and the warnings seen up to that point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Never empty.
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// One error per line in `file:line:col: message` form. A hint follows its error on a separate
/// line starting with `    help: `.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
            if let Some(help) = &d.help {
                write!(f, "\n    help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// The configuration
// ---------------------------------------------------------------------------------------------

/// `NodeConfig` (and `IfType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Correspondent node: UMIP's default.
    #[default]
    Cn,
    Ha,
    Mn,
}

impl NodeRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cn => "CN",
            Self::Ha => "HA",
            Self::Mn => "MN",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a `BindingAclPolicy` / `DefaultBindingAclPolicy` match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AclAction {
    #[default]
    Allow,
    Deny,
    /// A number in the config: the home agent answers with exactly this Binding Acknowledgement
    /// status.
    Status(u8),
}

impl AclAction {
    /// The Binding Acknowledgement status this produces (RFC 6275 6.1.8): `allow` is 0
    /// (accepted), `deny` is 129 (administratively prohibited), and a number is itself.
    pub const fn status_code(self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::Deny => 129,
            Self::Status(s) => s,
        }
    }
}

/// One `Interface` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UmipInterface {
    pub name: String,
    /// `IfType`; `None` means the interface takes the `NodeConfig` role.
    pub if_type: Option<NodeRole>,
    /// `MnIfPreference`: 0..=10, where 1 is most preferred and 0 means not used; default 10.
    pub mn_if_preference: u8,
    /// `Tunnel`; default disabled. A home agent may not use tunnel interfaces.
    pub tunnel: bool,
    pub loc: Location,
}

impl UmipInterface {
    /// The role this interface plays on a node configured as `node`.
    pub fn effective_role(&self, node: NodeRole) -> NodeRole {
        self.if_type.unwrap_or(node)
    }
}

/// `BindingAclPolicy HoA [(mnp/len, ...)] allow|deny|<status>;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclEntry {
    pub hoa: Ipv6Addr,
    /// The NEMO mobile network prefixes this mobile router may register (implicit mode).
    pub mnps: Vec<Prefix>,
    pub action: AclAction,
    pub loc: Location,
}

/// The `TYPE` of an `IPsecPolicy` line, spelled as in UMIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpsecPolicyType {
    HomeRegBinding,
    Mh,
    MobPfxDisc,
    Icmp,
    Any,
    TunnelHomeTesting,
    TunnelMh,
    TunnelPayload,
}

impl IpsecPolicyType {
    pub const ALL: [Self; 8] = [
        Self::HomeRegBinding,
        Self::Mh,
        Self::MobPfxDisc,
        Self::Icmp,
        Self::Any,
        Self::TunnelHomeTesting,
        Self::TunnelMh,
        Self::TunnelPayload,
    ];

    /// UMIP's keyword.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HomeRegBinding => "HomeRegBinding",
            Self::Mh => "Mh",
            Self::MobPfxDisc => "MobPfxDisc",
            Self::Icmp => "ICMP",
            Self::Any => "any",
            Self::TunnelHomeTesting => "TunnelHomeTesting",
            Self::TunnelMh => "TunnelMh",
            Self::TunnelPayload => "TunnelPayload",
        }
    }

    /// Tunnel-mode types (UMIP needs `XFRM_MSG_MIGRATE` for them).
    pub const fn is_tunnel(self) -> bool {
        matches!(
            self,
            Self::TunnelHomeTesting | Self::TunnelMh | Self::TunnelPayload
        )
    }

    fn from_umip(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for IpsecPolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `UseESP` / `UseAH` / `UseIPComp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpsecProto {
    Esp,
    Ah,
    IpComp,
}

impl IpsecProto {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Esp => "UseESP",
            Self::Ah => "UseAH",
            Self::IpComp => "UseIPComp",
        }
    }
}

/// `IPsecPolicy TYPE UseESP [reqid_toHA [reqid_toMN]] [bool];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpsecPolicy {
    pub kind: IpsecPolicyType,
    /// At least one protocol, in the order written, without duplicates.
    pub protocols: Vec<IpsecProto>,
    /// reqid of the SA from the mobile node to the home agent. 0 means no reqid (UMIP/XFRM).
    pub reqid_to_ha: u32,
    /// reqid of the SA from the home agent to the mobile node. When one reqid is written, both
    /// fields hold it.
    pub reqid_to_mn: u32,
    /// The optional trailing boolean: `true` (the default) gives an allow policy, `false` a
    /// block policy.
    pub allow: bool,
    pub loc: Location,
}

/// `IPsecPolicySet { HomeAgentAddress a; HomeAddress h/len; ... IPsecPolicy ...; }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpsecPolicySet {
    pub home_agent: Ipv6Addr,
    /// The home addresses with their prefix lengths; there is at least one. Matching compares
    /// the address only (as UMIP does); the length is kept as written.
    pub home_addresses: Vec<Prefix>,
    /// At least one policy, with no type repeated.
    pub policies: Vec<IpsecPolicy>,
    pub loc: Location,
}

/// One line of `CnBindingPolicySet { peer_hoa [local_addr] bool; }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CnBindingPolicy {
    pub peer_hoa: Ipv6Addr,
    pub local_addr: Option<Ipv6Addr>,
    /// Whether route optimisation with that peer is allowed.
    pub allow: bool,
    pub loc: Location,
}

/// `MnRoPolicy [cn_address] bool;` inside an `MnHomeLink`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnRoPolicy {
    /// `::` when no address was written: the policy then matches every correspondent node.
    pub cn: Ipv6Addr,
    pub route_optimize: bool,
}

/// `MnHomeLink "if" { ... }` (mobile node). The block accepts the options UMIP's grammar and man
/// page define: `HomeAgentAddress`, `HomeAddress` (with an optional MNP list), `IsMobRtr`,
/// `MnRoPolicy`, `HomePrefix` and `UseAltCoa`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnHomeLink {
    pub name: String,
    /// `::` (the default) means the address is found with DHAAD.
    pub home_agent: Ipv6Addr,
    /// Required.
    pub home_address: Prefix,
    /// The mobile network prefixes after `HomeAddress` (NEMO).
    pub mnps: Vec<Prefix>,
    pub is_mob_rtr: bool,
    /// `HomePrefix`; when absent UMIP derives it from `home_address`.
    pub home_prefix: Option<Prefix>,
    pub use_alt_coa: bool,
    pub ro_policies: Vec<MnRoPolicy>,
    pub loc: Location,
}

/// A parsed `mip6d.conf`. [`Default`] gives UMIP's defaults (see `conf_default()` in UMIP's
/// `conf.c`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UmipConfig {
    // --- common ---
    /// `NodeConfig`, default CN.
    pub node: NodeRole,
    /// `DebugLevel`, 0..=10, default 0.
    pub debug_level: u8,
    /// `DebugLogFile`.
    pub debug_log_file: Option<PathBuf>,
    /// `Interface`. When there is none, UMIP uses every interface except ifindex 1.
    pub interfaces: Vec<UmipInterface>,
    /// `UseMnHaIPsec`, default enabled.
    pub use_mn_ha_ipsec: bool,
    /// `KeyMngMobCapability`, default disabled.
    pub key_mng_mob_capability: bool,
    /// `TunnelPayloadForceSANego`, default enabled.
    pub tunnel_payload_force_sa_nego: bool,
    pub ipsec_policy_sets: Vec<IpsecPolicySet>,
    /// `NonVolatileBindingCache` (None: not given). UMIP ignores it; hagent keeps the home
    /// agent's binding cache across restarts unless it says `disabled`.
    pub non_volatile_binding_cache: Option<bool>,
    /// `DoRouteOptimizationCN`, default enabled.
    pub do_route_optimization_cn: bool,
    /// `CnBindingPolicySet`.
    pub cn_binding_policies: Vec<CnBindingPolicy>,

    // --- home agent ---
    /// `BindingAclPolicy` lines.
    pub binding_acl: Vec<AclEntry>,
    /// `DefaultBindingAclPolicy`, default allow.
    pub default_acl: AclAction,
    /// `HaMaxBindingLife` in seconds, 0..=262140, default 262140.
    pub ha_max_binding_life: u32,
    /// `HaAcceptMobRtr`, default disabled.
    pub ha_accept_mob_rtr: bool,
    /// `HaServedPrefix` lines.
    pub ha_served_prefixes: Vec<Prefix>,
    /// `SendMobPfxAdvs`, default enabled.
    pub send_mob_pfx_advs: bool,
    /// `SendUnsolMobPfxAdvs`, default enabled.
    pub send_unsol_mob_pfx_advs: bool,
    /// `MinMobPfxAdvInterval` in seconds, default 600.
    pub min_mob_pfx_adv_interval: u32,
    /// `MaxMobPfxAdvInterval` in seconds, default 86400.
    pub max_mob_pfx_adv_interval: u32,

    // --- mobile node ---
    /// `MnHomeLink` blocks.
    pub home_links: Vec<MnHomeLink>,
    /// `MnMaxHaBindingLife` in seconds, default 262140.
    pub mn_max_ha_binding_life: u32,
    /// `MnMaxCnBindingLife` in seconds, 0..=420, default 420.
    pub mn_max_cn_binding_life: u32,
    /// `MnRouterProbes`, default 0.
    pub mn_router_probes: u32,
    /// `MnRouterProbeTimeout`, default 0.
    pub mn_router_probe_timeout: Duration,
    /// `MnDiscardHaParamProb`, default disabled.
    pub mn_discard_ha_param_prob: bool,
    /// `OptimisticHandoff`, default disabled.
    pub optimistic_handoff: bool,
    /// `DoRouteOptimizationMN`, default enabled.
    pub do_route_optimization_mn: bool,
    /// `UseCnBuAck`, default disabled.
    pub use_cn_bu_ack: bool,
    /// `MnUseAllInterfaces`, default disabled.
    pub mn_use_all_interfaces: bool,
    /// `SendMobPfxSols`, default enabled.
    pub send_mob_pfx_sols: bool,
    /// `MobRtrUseExplicitMode`, default enabled.
    pub mob_rtr_use_explicit_mode: bool,
    /// `InitialBindackTimeoutFirstReg`, default 1.5 s.
    pub initial_bindack_timeout_first_reg: Duration,
    /// `InitialBindackTimeoutReReg`, default 1 s (`INITIAL_BINDACK_TIMEOUT`).
    pub initial_bindack_timeout_re_reg: Duration,
    /// `InitialSolicitTimer`, default 3 s (`INITIAL_SOLICIT_TIMER`).
    pub initial_solicit_timer: Duration,

    /// Warnings: things that were accepted but deserve attention.
    pub warnings: Vec<Diagnostic>,
}

impl Default for UmipConfig {
    fn default() -> Self {
        Self {
            node: NodeRole::Cn,
            debug_level: 0,
            debug_log_file: None,
            interfaces: Vec::new(),
            use_mn_ha_ipsec: true,
            key_mng_mob_capability: false,
            tunnel_payload_force_sa_nego: true,
            ipsec_policy_sets: Vec::new(),
            non_volatile_binding_cache: None,
            do_route_optimization_cn: true,
            cn_binding_policies: Vec::new(),
            binding_acl: Vec::new(),
            default_acl: AclAction::Allow,
            ha_max_binding_life: MAX_BINDING_LIFETIME,
            ha_accept_mob_rtr: false,
            ha_served_prefixes: Vec::new(),
            send_mob_pfx_advs: true,
            send_unsol_mob_pfx_advs: true,
            min_mob_pfx_adv_interval: 600,
            max_mob_pfx_adv_interval: 86_400,
            home_links: Vec::new(),
            mn_max_ha_binding_life: MAX_BINDING_LIFETIME,
            mn_max_cn_binding_life: MAX_RR_BINDING_LIFETIME,
            mn_router_probes: 0,
            mn_router_probe_timeout: Duration::ZERO,
            mn_discard_ha_param_prob: false,
            optimistic_handoff: false,
            do_route_optimization_mn: true,
            use_cn_bu_ack: false,
            mn_use_all_interfaces: false,
            send_mob_pfx_sols: true,
            mob_rtr_use_explicit_mode: true,
            initial_bindack_timeout_first_reg: Duration::from_millis(1500),
            initial_bindack_timeout_re_reg: Duration::from_secs(1),
            initial_solicit_timer: Duration::from_secs(3),
            warnings: Vec::new(),
        }
    }
}

impl UmipConfig {
    /// The interfaces that act as home-agent links: their `IfType`, or failing that
    /// `NodeConfig`, is HA.
    pub fn home_agent_interfaces(&self) -> impl Iterator<Item = &UmipInterface> {
        let node = self.node;
        self.interfaces
            .iter()
            .filter(move |i| i.effective_role(node) == NodeRole::Ha)
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Parses `text` as if it were the file `origin`. `origin` is used in diagnostics, and relative
/// `include` patterns are resolved against its directory. `origin` need not exist unless the text
/// uses `include`.
pub fn parse_str(text: &str, origin: &Path) -> Result<UmipConfig, ConfigError> {
    let mut ctx = Ctx::new(origin);
    parse_text(&mut ctx, text, origin);
    ctx.finish()
}

/// Reads and parses the file `path`, following `include` directives.
pub fn parse_file(path: &Path) -> Result<UmipConfig, ConfigError> {
    match read_config(path) {
        Ok(text) => parse_str(&text, path),
        Err(e) => Err(ConfigError {
            errors: vec![e.into_diagnostic(path)],
            warnings: Vec::new(),
        }),
    }
}

enum ReadError {
    Io(std::io::Error),
    Utf8 { line: u32, column: u32 },
}

impl ReadError {
    fn into_diagnostic(self, path: &Path) -> Diagnostic {
        match self {
            Self::Io(e) => Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read configuration file: {e}"),
                help: None,
            },
            Self::Utf8 { line, column } => Diagnostic {
                file: path.to_path_buf(),
                line,
                column,
                message: "file is not valid UTF-8".to_string(),
                help: Some("save the configuration as UTF-8 (or plain ASCII)".to_string()),
            },
        }
    }
}

fn read_config(path: &Path) -> Result<String, ReadError> {
    let bytes = super::read_bounded(path).map_err(ReadError::Io)?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // `good` is valid UTF-8 by construction.
            let good = std::str::from_utf8(good).unwrap_or_default();
            let line = good.matches('\n').count() + 1;
            let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(ReadError::Utf8 {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// Keywords, numbers, addresses, booleans: a run of characters that are not whitespace or
    /// punctuation. The parser classifies them, so a bad address is reported as a bad address.
    Word(String),
    Str(String),
    Semi,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Slash,
    /// Not UMIP syntax; lexed so that `Keyword = value` gets a targeted message.
    Eq,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: u32,
    col: u32,
    /// The column just after the token (tokens never span lines).
    end_col: u32,
}

impl Token {
    fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Eof => "end of file".to_string(),
            _ => format!("'{}'", self.source_text()),
        }
    }

    fn source_text(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Semi => ";".into(),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Slash => "/".into(),
            Tok::Eq => "=".into(),
            Tok::Eof => String::new(),
        }
    }
}

struct LexDiag {
    diag: Diagnostic,
    error: bool,
}

const LEFT_LOW_QUOTE: char = '\u{201E}'; // „
const LEFT_QUOTE: char = '\u{201C}'; // “
const RIGHT_QUOTE: char = '\u{201D}'; // ”

fn is_open_quote(c: char) -> bool {
    matches!(c, '"' | LEFT_LOW_QUOTE | LEFT_QUOTE | RIGHT_QUOTE)
}

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || is_open_quote(c)
        || matches!(c, ';' | '{' | '}' | '(' | ')' | ',' | '/' | '=' | '#'))
}

fn space_name(c: char) -> String {
    let name = match c {
        '\u{a0}' => " (no-break space)",
        '\u{202f}' => " (narrow no-break space)",
        '\u{2009}' => " (thin space)",
        '\u{3000}' => " (ideographic space)",
        _ => "",
    };
    format!("U+{:04X}{name}", u32::from(c))
}

fn lex(text: &str, file: &Path) -> (Vec<Token>, Vec<LexDiag>) {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut diags = Vec::new();
    let diag = |line: u32, column: u32, message: String| Diagnostic {
        file: file.to_path_buf(),
        line,
        column,
        message,
        help: None,
    };
    let mut i = 0usize;
    let (mut line, mut col) = (1u32, 1u32);
    if chars.first() == Some(&'\u{feff}') {
        i = 1; // byte-order mark
    }
    let mut odd_space_warned = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line = line.saturating_add(1);
            col = 1;
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_whitespace() {
            if !c.is_ascii() && !odd_space_warned {
                odd_space_warned = true;
                diags.push(LexDiag {
                    diag: diag(
                        line,
                        col,
                        format!(
                            "non-ASCII whitespace {} read as a space; UMIP would reject this file",
                            space_name(c)
                        ),
                    )
                    .with_help(
                        "this usually comes from copying a config out of slides or a PDF; \
                         replace it with plain spaces (further occurrences in this file are \
                         not reported)",
                    ),
                    error: false,
                });
            }
            i += 1;
            col = col.saturating_add(1);
            continue;
        }
        let punct = match c {
            ';' => Some(Tok::Semi),
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '/' => Some(Tok::Slash),
            '=' => Some(Tok::Eq),
            _ => None,
        };
        if let Some(tok) = punct {
            toks.push(Token {
                tok,
                line,
                col,
                end_col: col.saturating_add(1),
            });
            i += 1;
            col = col.saturating_add(1);
            continue;
        }
        if is_open_quote(c) {
            let typographic = c != '"';
            let start = col;
            i += 1;
            col = col.saturating_add(1);
            let mut s = String::new();
            let mut close = None;
            while i < chars.len() && chars[i] != '\n' {
                let d = chars[i];
                i += 1;
                col = col.saturating_add(1);
                if d == '"' || (typographic && matches!(d, LEFT_QUOTE | RIGHT_QUOTE)) {
                    close = Some(d);
                    break;
                }
                s.push(d);
            }
            match close {
                Some(close) => {
                    if typographic || close != '"' {
                        diags.push(LexDiag {
                            diag: diag(
                                line,
                                start,
                                format!(
                                    "typographic quotes in {c}{s}{close}: UMIP only accepts ASCII \
                                     double quotes; read as \"{s}\""
                                ),
                            )
                            .with_help(format!("write \"{s}\"")),
                            error: false,
                        });
                    }
                    toks.push(Token {
                        tok: Tok::Str(s),
                        line,
                        col: start,
                        end_col: col,
                    });
                }
                None => {
                    let mut d = diag(
                        line,
                        start,
                        format!("unterminated string {c}{s} (missing closing '\"')"),
                    );
                    if s.contains([LEFT_QUOTE, RIGHT_QUOTE]) {
                        d = d.with_help(
                            "the string opens with an ASCII '\"' but closes with a typographic \
                             quote; use '\"' on both sides",
                        );
                    } else {
                        d = d.with_help("strings must end on the line where they start");
                    }
                    diags.push(LexDiag {
                        diag: d,
                        error: true,
                    });
                    // Recovery: `"foo;` and `"eth0 {` most likely meant `"foo";` and `"eth0" {`.
                    let trimmed = s.trim_end();
                    let mut trailing = None;
                    if let Some(last @ (';' | '{')) = trimmed.chars().last() {
                        let idx = trimmed.chars().count() - 1;
                        let tcol = start
                            .saturating_add(1)
                            .saturating_add(u32::try_from(idx).unwrap_or(u32::MAX));
                        let tok = if last == ';' { Tok::Semi } else { Tok::LBrace };
                        trailing = Some(Token {
                            tok,
                            line,
                            col: tcol,
                            end_col: tcol.saturating_add(1),
                        });
                        s = trimmed[..trimmed.len() - 1].trim_end().to_string();
                    }
                    toks.push(Token {
                        tok: Tok::Str(s),
                        line,
                        col: start,
                        end_col: col,
                    });
                    toks.extend(trailing);
                }
            }
            continue;
        }
        if c.is_control() {
            diags.push(LexDiag {
                diag: diag(
                    line,
                    col,
                    format!("unexpected control character U+{:04X}", u32::from(c)),
                ),
                error: true,
            });
            i += 1;
            col = col.saturating_add(1);
            continue;
        }
        let start = col;
        let mut w = String::new();
        while i < chars.len() && is_word_char(chars[i]) {
            w.push(chars[i]);
            i += 1;
            col = col.saturating_add(1);
        }
        toks.push(Token {
            tok: Tok::Word(w),
            line,
            col: start,
            end_col: col,
        });
    }
    toks.push(Token {
        tok: Tok::Eof,
        line,
        col,
        end_col: col,
    });
    (toks, diags)
}

// ---------------------------------------------------------------------------------------------
// Keyword tables
// ---------------------------------------------------------------------------------------------

const TOP_KEYWORDS: &[&str] = &[
    "include",
    "NodeConfig",
    "DebugLevel",
    "DebugLogFile",
    "Interface",
    "UseMnHaIPsec",
    "KeyMngMobCapability",
    "TunnelPayloadForceSANego",
    "IPsecPolicySet",
    "NonVolatileBindingCache",
    "DoRouteOptimizationCN",
    "CnBindingPolicySet",
    "UsePolicyModule",
    "UseMovementModule",
    "BindingAclPolicy",
    "DefaultBindingAclPolicy",
    "HaMaxBindingLife",
    "HaAcceptMobRtr",
    "HaServedPrefix",
    "SendMobPfxAdvs",
    "SendUnsolMobPfxAdvs",
    "MinMobPfxAdvInterval",
    "MaxMobPfxAdvInterval",
    "MnHomeLink",
    "MnMaxHaBindingLife",
    "MnMaxCnBindingLife",
    "MnRouterProbes",
    "MnRouterProbeTimeout",
    "MnDiscardHaParamProb",
    "OptimisticHandoff",
    "DoRouteOptimizationMN",
    "UseCnBuAck",
    "MnUseAllInterfaces",
    "SendMobPfxSols",
    "MobRtrUseExplicitMode",
    "InitialBindackTimeoutFirstReg",
    "InitialBindackTimeoutReReg",
    "InitialSolicitTimer",
    "NoHomeReturn",
    "MnResetDhaadAtHome",
    "MnFlushAllAtHome",
    "MnMaxHaConsecutiveResends",
    "MnMaxCnConsecutiveResends",
    "InterfaceInitialInitDelay",
];

/// UMIP 1.0 directives hagent parses and checks but does not act on, with what it does
/// instead: each use gets a warning naming it (nothing parsed is dropped without a word). A
/// boolean set to its "off" value is what hagent does anyway and gets none.
const NOT_ACTED_ON: &[(&str, &str)] = &[
    (
        "KeyMngMobCapability",
        "hagent has no IKE key management (the K bit is never set); SAs are manual",
    ),
    (
        "TunnelPayloadForceSANego",
        "hagent has no IKE key management; SAs are manual",
    ),
    (
        "DoRouteOptimizationCN",
        "route optimisation (the correspondent node role) is not implemented",
    ),
    (
        "CnBindingPolicySet",
        "route optimisation (the correspondent node role) is not implemented",
    ),
    (
        "SendUnsolMobPfxAdvs",
        "unsolicited Mobile Prefix Advertisements are not sent (solicitations are answered)",
    ),
    (
        "MinMobPfxAdvInterval",
        "unsolicited Mobile Prefix Advertisements are not sent (solicitations are answered)",
    ),
    (
        "MaxMobPfxAdvInterval",
        "unsolicited Mobile Prefix Advertisements are not sent (solicitations are answered)",
    ),
    (
        "SendMobPfxSols",
        "hagent's mobile node sends no Mobile Prefix Solicitations",
    ),
    (
        "MnMaxCnBindingLife",
        "route optimisation is not implemented: no correspondent bindings",
    ),
    (
        "DoRouteOptimizationMN",
        "route optimisation is not implemented: traffic stays in the tunnel",
    ),
    ("UseCnBuAck", "route optimisation is not implemented"),
    (
        "MnRouterProbes",
        "hagent's mobile node detects movement from address and route changes, not router probes",
    ),
    (
        "MnRouterProbeTimeout",
        "hagent's mobile node detects movement from address and route changes, not router probes",
    ),
    (
        "InitialSolicitTimer",
        "hagent's mobile node sends no router solicitations of its own",
    ),
    (
        "MnDiscardHaParamProb",
        "hagent's mobile node ignores Parameter Problems from the home agent",
    ),
    (
        "OptimisticHandoff",
        "hagent's mobile node always waits for the BA before it uses a new care-of address",
    ),
    (
        "MnUseAllInterfaces",
        "hagent's mobile node uses the interfaces of its configuration only",
    ),
    (
        "MobRtrUseExplicitMode",
        "hagent's mobile node is not a mobile router",
    ),
    (
        "NoHomeReturn",
        "hagent's mobile node always deregisters when it returns home",
    ),
    (
        "MnResetDhaadAtHome",
        "Dynamic Home Agent Address Discovery is not implemented",
    ),
    (
        "MnFlushAllAtHome",
        "hagent's mobile node deregisters its home binding at home; there are no others",
    ),
    (
        "MnMaxHaConsecutiveResends",
        "hagent's mobile node retransmits a BU until MAX_BINDACK_TIMEOUT, not a count",
    ),
    (
        "MnMaxCnConsecutiveResends",
        "route optimisation is not implemented",
    ),
    (
        "InterfaceInitialInitDelay",
        "hagent starts on an interface at once",
    ),
    ("IfType", "an interface's role follows NodeConfig"),
    (
        "MnIfPreference",
        "hagent's mobile node uses the first usable interface",
    ),
    (
        "Tunnel",
        "hagent does not create tunnel interfaces: XDP/TC encapsulate",
    ),
    ("IsMobRtr", "hagent's mobile node is not a mobile router"),
    ("MnRoPolicy", "route optimisation is not implemented"),
    (
        "HomePrefix",
        "hagent's mobile node takes its home prefix from HomeAddress",
    ),
    (
        "UseAltCoa",
        "hagent's mobile node sends no Alternate Care-of Address option",
    ),
];

/// Words that turn a boolean directive off.
const OFF_WORDS: &[&str] = &["disabled", "false", "off"];

/// Top-level spellings from the talk, mapped to UMIP's keywords.
const TOP_ALIASES: &[(&str, &str)] = &[
    ("BindAclPolicy", "BindingAclPolicy"),
    ("DefaultBindPolicy", "DefaultBindingAclPolicy"),
    ("IPSecPolicySet", "IPsecPolicySet"),
];

/// Directives that some UMIP versions or forks know but hagent does not implement.
const UNSUPPORTED: &[&str] = &[
    "MnUseDsmip6",
    "HaAcceptDsmip6",
    "MnSupportIPv4Traffic",
    "HomeAgentAddress4",
    "HomeAddress4",
    "HomePrefix4",
    "HomeAgentName",
    "IfUseDhcp",
    "MnP4",
    "LinkUpDelay",
    "LinkName",
    "IfName",
];

const IFACE_KEYWORDS: &[&str] = &["IfType", "MnIfPreference", "Tunnel"];
const SET_KEYWORDS: &[&str] = &["HomeAgentAddress", "HomeAddress", "IPsecPolicy"];
const HOME_LINK_KEYWORDS: &[&str] = &[
    "HomeAgentAddress",
    "HomeAddress",
    "IsMobRtr",
    "MnRoPolicy",
    "HomePrefix",
    "UseAltCoa",
    // Not valid here; listed so that it gets its own message instead of "missing '}'".
    "HaServedPrefix",
];

const BLOCK_ONLY: &[(&str, &str)] = &[
    ("HomeAgentAddress", "an IPsecPolicySet or MnHomeLink block"),
    ("HomeAddress", "an IPsecPolicySet or MnHomeLink block"),
    ("IPsecPolicy", "an IPsecPolicySet block"),
    ("IPSecPolicy", "an IPsecPolicySet block"),
    ("IfType", "an Interface \"name\" { ... } block"),
    ("MnIfPreference", "an Interface \"name\" { ... } block"),
    ("Tunnel", "an Interface \"name\" { ... } block"),
    ("IsMobRtr", "an MnHomeLink block"),
    ("MnRoPolicy", "an MnHomeLink block"),
    ("HomePrefix", "an MnHomeLink block"),
    ("UseAltCoa", "an MnHomeLink block"),
];

const RADVD_WORDS: &[&str] = &[
    "interface",
    "prefix",
    "route",
    "RDNSS",
    "DNSSL",
    "clients",
    "AdvSendAdvert",
    "AdvHomeAgentFlag",
    "AdvHomeAgentInfo",
    "HomeAgentLifetime",
    "HomeAgentPreference",
    "AdvMobRtrSupportFlag",
    "AdvIntervalOpt",
    "AdvRouterAddr",
    "AdvOnLink",
    "AdvAutonomous",
    "MinRtrAdvInterval",
    "MaxRtrAdvInterval",
    "AdvDefaultLifetime",
    "AdvManagedFlag",
    "AdvOtherConfigFlag",
];

const SETKEY_WORDS: &[&str] = &[
    "add",
    "spdadd",
    "flush",
    "spdflush",
    "delete",
    "deleteall",
    "spddelete",
    "get",
    "dump",
    "spddump",
];

fn is_top_keyword(w: &str) -> bool {
    TOP_KEYWORDS.contains(&w) || TOP_ALIASES.iter().any(|(a, _)| *a == w)
}

fn bool_word(w: &str) -> Option<bool> {
    match w {
        // UMIP's scanner: true = enabled|allow|true, false = disabled|deny|block|false.
        "enabled" | "true" | "allow" | "on" => Some(true),
        "disabled" | "false" | "deny" | "block" | "off" => Some(false),
        _ => None,
    }
}

enum UintError {
    NotNumber,
    TooLarge,
}

fn parse_uint(s: &str) -> Result<u64, UintError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UintError::NotNumber);
    }
    s.parse().map_err(|_| UintError::TooLarge)
}

/// `N` or `N.F` seconds, exact to the nanosecond (more fractional digits are truncated).
fn parse_seconds(s: &str) -> Option<Duration> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut nanos = 0u32;
    for (k, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - k as u32);
    }
    Some(Duration::new(secs, nanos))
}

fn has_host_bits((addr, len): Prefix) -> bool {
    crate::system::host_bits(addr, len) != 0
}

fn network_of((addr, len): Prefix) -> Ipv6Addr {
    crate::system::network(addr, len)
}

fn check_ifname(name: &str) -> bool {
    !(name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()))
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Marks an error that has already been recorded; the caller resynchronises.
struct Fail;
type PResult<T> = Result<T, Fail>;

struct Ctx {
    cfg: UmipConfig,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// The files being parsed, outermost first: (canonical path, path as displayed).
    stack: Vec<(PathBuf, PathBuf)>,
    /// Where each single-valued directive was last set.
    seen: HashMap<&'static str, Location>,
    node_loc: Option<Location>,
    /// Every `MnHomeLink` directive, valid or not.
    home_link_locs: Vec<Location>,
    aborted: bool,
}

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

impl Ctx {
    fn new(origin: &Path) -> Self {
        Self {
            cfg: UmipConfig::default(),
            errors: Vec::new(),
            warnings: Vec::new(),
            stack: vec![(canonical(origin), origin.to_path_buf())],
            seen: HashMap::new(),
            node_loc: None,
            home_link_locs: Vec::new(),
            aborted: false,
        }
    }

    fn error(&mut self, d: Diagnostic) {
        if self.aborted {
            return;
        }
        if self.errors.len() >= MAX_ERRORS {
            self.aborted = true;
            self.errors.push(Diagnostic {
                message: format!("too many errors ({MAX_ERRORS}); giving up"),
                help: None,
                ..d
            });
            return;
        }
        self.errors.push(d);
    }

    fn warn(&mut self, d: Diagnostic) {
        if self.warnings.len() < 10 * MAX_ERRORS {
            self.warnings.push(d);
        }
    }

    /// Checks that need the whole configuration, then the verdict.
    fn finish(mut self) -> Result<UmipConfig, ConfigError> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let cfg = &self.cfg;

        let mut names: HashMap<&str, &Location> = HashMap::new();
        for i in &cfg.interfaces {
            if let Some(first) = names.insert(&i.name, &i.loc) {
                errors.push(
                    Diagnostic::at(
                        &i.loc,
                        format!(
                            "duplicate Interface {:?} (already declared at {first})",
                            i.name
                        ),
                    )
                    .with_help("declare each interface once; put its options in one block"),
                );
            }
            if i.tunnel && i.effective_role(cfg.node) == NodeRole::Ha {
                errors.push(Diagnostic::at(
                    &i.loc,
                    format!(
                        "Interface {:?} is marked Tunnel, but a home agent cannot serve on a \
                         tunnel interface (UMIP refuses this too)",
                        i.name
                    ),
                ));
            }
        }

        let mut hoas: HashMap<Ipv6Addr, &Location> = HashMap::new();
        for e in &cfg.binding_acl {
            if let Some(first) = hoas.insert(e.hoa, &e.loc) {
                errors.push(
                    Diagnostic::at(
                        &e.loc,
                        format!(
                            "duplicate BindingAclPolicy for home address {} (already given at \
                             {first})",
                            e.hoa
                        ),
                    )
                    .with_help("keep one BindingAclPolicy line per home address"),
                );
            }
        }

        let sets = &cfg.ipsec_policy_sets;
        for (j, b) in sets.iter().enumerate() {
            for a in &sets[..j] {
                if a.home_agent != b.home_agent {
                    continue;
                }
                let common = b
                    .home_addresses
                    .iter()
                    .find(|(h, _)| a.home_addresses.iter().any(|(x, _)| x == h));
                if let Some((hoa, _)) = common {
                    errors.push(
                        Diagnostic::at(
                            &b.loc,
                            format!(
                                "IPsecPolicySet overlaps the one at {}: both cover \
                                 HomeAgentAddress {} with HomeAddress {hoa}",
                                a.loc, b.home_agent
                            ),
                        )
                        .with_help(
                            "UMIP rejects overlapping IPsec policies; put all IPsecPolicy lines \
                             for one home agent/home address pair into a single IPsecPolicySet",
                        ),
                    );
                    break;
                }
            }
        }
        if !cfg.use_mn_ha_ipsec {
            if let Some(s) = sets.first() {
                warnings.push(Diagnostic::at(
                    &s.loc,
                    "IPsecPolicySet has no effect: UseMnHaIPsec is disabled",
                ));
            }
        }

        let mut peers: HashMap<Ipv6Addr, &Location> = HashMap::new();
        for p in &cfg.cn_binding_policies {
            if let Some(first) = peers.insert(p.peer_hoa, &p.loc) {
                errors.push(Diagnostic::at(
                    &p.loc,
                    format!(
                        "duplicate CnBindingPolicySet entry for {} (already given at {first})",
                        p.peer_hoa
                    ),
                ));
            }
        }

        let node_at = self
            .node_loc
            .as_ref()
            .map(|l| format!(" (at {l})"))
            .unwrap_or_default();
        match cfg.node {
            NodeRole::Ha => {
                for l in &self.home_link_locs {
                    errors.push(
                        Diagnostic::at(
                            l,
                            format!(
                                "MnHomeLink is a mobile-node directive, but NodeConfig is \
                                 HA{node_at}"
                            ),
                        )
                        .with_help(
                            "remove the MnHomeLink block; it belongs in the mobile node's \
                             mip6d.conf",
                        ),
                    );
                }
            }
            NodeRole::Mn if self.home_link_locs.is_empty() => {
                let loc = self.node_loc.clone().unwrap_or_else(|| Location {
                    file: self.stack[0].1.clone(),
                    line: 0,
                    column: 0,
                });
                errors.push(
                    Diagnostic::at(&loc, "NodeConfig MN needs at least one MnHomeLink block")
                        .with_help(
                            "add MnHomeLink \"eth0\" { HomeAgentAddress <ha>; HomeAddress \
                             <hoa>/64; }",
                        ),
                );
            }
            _ => {}
        }

        if cfg.min_mob_pfx_adv_interval > cfg.max_mob_pfx_adv_interval {
            if let Some(l) = self
                .seen
                .get("MinMobPfxAdvInterval")
                .or_else(|| self.seen.get("MaxMobPfxAdvInterval"))
            {
                warnings.push(Diagnostic::at(
                    l,
                    format!(
                        "MinMobPfxAdvInterval ({} s) is greater than MaxMobPfxAdvInterval ({} s)",
                        cfg.min_mob_pfx_adv_interval, cfg.max_mob_pfx_adv_interval
                    ),
                ));
            }
        }

        for e in errors {
            self.error(e);
        }
        self.warnings.extend(warnings);
        if self.errors.is_empty() {
            let mut cfg = self.cfg;
            cfg.warnings = self.warnings;
            Ok(cfg)
        } else {
            Err(ConfigError {
                errors: self.errors,
                warnings: self.warnings,
            })
        }
    }
}

fn parse_text(ctx: &mut Ctx, text: &str, file: &Path) {
    let (toks, pending) = lex(text, file);
    let mut p = Parser {
        toks,
        pos: 0,
        file: file.to_path_buf(),
        pending,
        pending_at: 0,
        stmt_start: 0,
        ctx,
    };
    p.flush_lex(false);
    p.top();
    p.flush_lex(true);
}

struct Parser<'c> {
    /// Never empty: the last token is `Eof`.
    toks: Vec<Token>,
    pos: usize,
    file: PathBuf,
    /// Lexer diagnostics, emitted as the parser moves past their position so that the output
    /// stays in source order.
    pending: Vec<LexDiag>,
    pending_at: usize,
    /// Index of the first token of the statement being parsed (for messages).
    stmt_start: usize,
    ctx: &'c mut Ctx,
}

impl Parser<'_> {
    // --- token plumbing ---

    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn prev(&self) -> Option<&Token> {
        self.pos.checked_sub(1).map(|i| &self.toks[i])
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        self.flush_lex(false);
        t
    }

    fn flush_lex(&mut self, all: bool) {
        let (line, col) = {
            let t = self.peek();
            (t.line, t.col)
        };
        while let Some(d) = self.pending.get(self.pending_at) {
            if !all && (d.diag.line, d.diag.column) >= (line, col) {
                break;
            }
            let (diag, error) = (d.diag.clone(), d.error);
            self.pending_at += 1;
            if error {
                self.ctx.error(diag);
            } else {
                self.ctx.warn(diag);
            }
        }
    }

    /// The position just after the previous token.
    fn prev_end(&self) -> (u32, u32) {
        self.prev().map_or((1, 1), |t| (t.line, t.end_col))
    }

    fn starts_line(&self) -> bool {
        let line = self.peek().line;
        self.prev().is_none_or(|p| p.line < line)
    }

    fn loc(&self, t: &Token) -> Location {
        Location {
            file: self.file.clone(),
            line: t.line,
            column: t.col,
        }
    }

    fn diag_at(&self, line: u32, column: u32, message: String, help: Option<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message,
            help,
        }
    }

    fn fail(&mut self, t: &Token, message: String, help: Option<String>) -> Fail {
        let d = self.diag_at(t.line, t.col, message, help);
        self.ctx.error(d);
        Fail
    }

    fn error(&mut self, t: &Token, message: String, help: Option<String>) {
        let _ = self.fail(t, message, help);
    }

    fn warn(&mut self, t: &Token, message: String, help: Option<String>) {
        let d = self.diag_at(t.line, t.col, message, help);
        self.ctx.warn(d);
    }

    /// The statement so far, as written (approximately), for messages.
    fn stmt_text(&self) -> String {
        let end = self.pos.min(self.toks.len());
        let start = self.stmt_start.min(end);
        let mut s = String::new();
        let mut prev: Option<&Tok> = None;
        for t in &self.toks[start..end] {
            if t.tok == Tok::Eof {
                break;
            }
            let glue = prev.is_none()
                || matches!(t.tok, Tok::Slash | Tok::Comma | Tok::RParen | Tok::Semi)
                || matches!(prev, Some(Tok::Slash | Tok::LParen));
            if !glue {
                s.push(' ');
            }
            s.push_str(&t.source_text());
            prev = Some(&t.tok);
        }
        if s.chars().count() > 60 {
            s = s.chars().take(57).collect::<String>() + "...";
        }
        s
    }

    /// Skips the rest of a broken statement: up to and including the next `;` (or a whole
    /// `{...}` block), stopping early before a `}` that closes the enclosing block or before a
    /// known keyword that starts a new line.
    fn recover(&mut self, known: &[&str]) {
        let mut depth = 0usize;
        loop {
            if self.ctx.aborted {
                return;
            }
            let starts_line = self.starts_line();
            let t = self.peek().clone();
            match &t.tok {
                Tok::Eof => return,
                Tok::Semi => {
                    self.bump();
                    if depth == 0 {
                        return;
                    }
                }
                Tok::LBrace => {
                    self.bump();
                    depth += 1;
                }
                Tok::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        if self.peek().tok == Tok::Semi {
                            self.bump();
                        }
                        return;
                    }
                }
                Tok::Word(w)
                    if depth == 0
                        && starts_line
                        && (known.contains(&w.as_str()) || is_top_keyword(w)) =>
                {
                    return;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    // --- structure ---

    fn top(&mut self) {
        while !self.ctx.aborted {
            let t = self.peek().clone();
            match &t.tok {
                Tok::Eof => break,
                Tok::Word(w) => {
                    let w = w.clone();
                    self.stmt_start = self.pos;
                    self.bump();
                    if self.directive(&t, &w).is_err() {
                        self.recover(TOP_KEYWORDS);
                    }
                }
                Tok::Semi => {
                    self.bump();
                    self.warn(&t, "stray ';' ignored".into(), None);
                }
                Tok::RBrace => {
                    self.bump();
                    self.error(&t, "unmatched '}' (no block is open here)".into(), None);
                }
                _ => {
                    self.bump();
                    let help = matches!(t.tok, Tok::Str(_)).then(|| {
                        "a directive keyword comes first, e.g. Interface \"eth0\";".to_string()
                    });
                    self.error(
                        &t,
                        format!("expected a directive, found {}", t.describe()),
                        help,
                    );
                    self.recover(TOP_KEYWORDS);
                }
            }
        }
    }

    /// The next option keyword in the block opened by `open`, or `None` once the block is over
    /// (its `}` and an optional `;` consumed) or evidently unterminated.
    fn block_next(&mut self, open: &Token, what: &str, known: &[&str]) -> Option<(Token, String)> {
        loop {
            if self.ctx.aborted {
                return None;
            }
            let starts_line = self.starts_line();
            let t = self.peek().clone();
            match &t.tok {
                Tok::RBrace => {
                    self.bump();
                    if self.peek().tok == Tok::Semi {
                        self.bump();
                    }
                    return None;
                }
                Tok::Eof => {
                    self.error(
                        open,
                        format!("unterminated {what} block: this '{{' is never closed by '}}'"),
                        None,
                    );
                    return None;
                }
                Tok::Word(w) => {
                    if starts_line
                        && w != "include"
                        && is_top_keyword(w)
                        && !known.contains(&w.as_str())
                    {
                        let (line, col) = self.prev_end();
                        let d = self.diag_at(
                            line,
                            col,
                            format!(
                                "missing '}}' before {w:?}: the {what} block opened at {} is not \
                                 closed",
                                self.loc(open)
                            ),
                            Some(format!("{w:?} is a top-level directive")),
                        );
                        self.ctx.error(d);
                        return None;
                    }
                    let w = w.clone();
                    self.stmt_start = self.pos;
                    self.bump();
                    return Some((t, w));
                }
                Tok::Semi => {
                    self.bump();
                    self.warn(&t, "stray ';' ignored".into(), None);
                }
                _ => {
                    self.bump();
                    self.error(
                        &t,
                        format!("expected a {what} option or '}}', found {}", t.describe()),
                        None,
                    );
                    self.recover(known);
                }
            }
        }
    }

    fn expect_lbrace(&mut self) -> PResult<Token> {
        let t = self.peek().clone();
        if t.tok == Tok::LBrace {
            return Ok(self.bump());
        }
        let text = self.stmt_text();
        Err(self.fail(
            &t,
            format!("expected '{{' after {text:?}, found {}", t.describe()),
            None,
        ))
    }

    /// Ends a statement. A `;` that is missing at the end of a line is reported but does not
    /// stop parsing.
    fn semi(&mut self) -> PResult<()> {
        let t = self.peek().clone();
        if t.tok == Tok::Semi {
            self.bump();
            return Ok(());
        }
        let (line, col) = self.prev_end();
        let text = self.stmt_text();
        if t.line > line || matches!(t.tok, Tok::Eof | Tok::RBrace) {
            let d = self.diag_at(line, col, format!("missing ';' after {text:?}"), None);
            self.ctx.error(d);
            return Ok(());
        }
        Err(self.fail(
            &t,
            format!("expected ';' after {text:?}, found {}", t.describe()),
            None,
        ))
    }

    /// Records "expected X" for the token `t`, at the end of the previous token when `t` is on
    /// a later line.
    fn expected(&mut self, t: &Token, expected: &str, what: &str) -> Fail {
        let (line, col) = self.prev_end();
        let help =
            (t.tok == Tok::Eq).then(|| format!("UMIP syntax has no '=': write {what} <value>;"));
        if t.line > line || t.tok == Tok::Eof {
            let d = self.diag_at(line, col, format!("missing {expected} in {what}"), help);
            self.ctx.error(d);
            return Fail;
        }
        self.fail(
            t,
            format!("expected {expected} in {what}, found {}", t.describe()),
            help,
        )
    }

    // --- values ---

    /// The next word as a value. A directive keyword at the start of the next line is not taken
    /// as the value: the value is then missing.
    fn value(&mut self, expected: &str, what: &str) -> PResult<(Token, String)> {
        let starts_line = self.starts_line();
        let t = self.peek().clone();
        if let Tok::Word(w) = &t.tok {
            if !(starts_line && is_top_keyword(w)) {
                let w = w.clone();
                self.bump();
                return Ok((t, w));
            }
        }
        Err(self.expected(&t, expected, what))
    }

    fn string(&mut self, what: &str) -> PResult<(Token, String)> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.bump();
                Ok((t, s))
            }
            Tok::Word(w) => {
                let w = w.clone();
                Err(self.fail(
                    &t,
                    format!("expected a quoted string in {what}, found {w:?}"),
                    Some(format!("UMIP needs double quotes: {what} \"{w}\"")),
                ))
            }
            _ => Err(self.expected(&t, "a quoted string", what)),
        }
    }

    fn addr_of(&mut self, t: &Token, w: &str, what: &str) -> PResult<Ipv6Addr> {
        if let Ok(a) = w.parse::<Ipv6Addr>() {
            return Ok(a);
        }
        let help = if w.parse::<Ipv4Addr>().is_ok() {
            Some("only IPv6 addresses are supported here".to_string())
        } else {
            homoglyph_help(w)
        };
        Err(self.fail(t, format!("invalid IPv6 address {w:?} in {what}"), help))
    }

    fn addr(&mut self, what: &str) -> PResult<Ipv6Addr> {
        let (t, w) = self.value("an IPv6 address", what)?;
        self.addr_of(&t, &w, what)
    }

    /// Refuses `/len` after an address that must not have one.
    fn no_prefix(&mut self, what: &str) -> PResult<()> {
        let t = self.peek().clone();
        if t.tok == Tok::Slash {
            return Err(self.fail(
                &t,
                format!("{what} takes a single address, without a prefix length"),
                None,
            ));
        }
        Ok(())
    }

    /// `addr/len`. With `network`, warns when host bits are set.
    fn prefix(&mut self, what: &str, network: bool) -> PResult<Prefix> {
        let (at, aw) = self.value("an IPv6 address/prefix-length", what)?;
        let addr = self.addr_of(&at, &aw, what)?;
        let t = self.peek().clone();
        if t.tok != Tok::Slash {
            let (line, col) = self.prev_end();
            let d = self.diag_at(
                line,
                col,
                format!("missing prefix length after {aw} in {what}"),
                Some(format!("write {aw}/64 (or the right length)")),
            );
            self.ctx.error(d);
            return Err(Fail);
        }
        self.bump();
        let (lt, lw) = self.value("a prefix length", what)?;
        let len = match parse_uint(&lw) {
            Ok(n) if n <= 128 => n as u8,
            Ok(_) | Err(UintError::TooLarge) => {
                return Err(self.fail(
                    &lt,
                    format!("invalid prefix length {lw} in {what} (must be 0..=128)"),
                    None,
                ));
            }
            Err(UintError::NotNumber) => {
                return Err(self.fail(
                    &lt,
                    format!("invalid prefix length {lw:?} in {what} (must be a number 0..=128)"),
                    None,
                ));
            }
        };
        if network && has_host_bits((addr, len)) {
            self.warn(
                &at,
                format!("{what} {addr}/{len} has host bits set"),
                Some(format!("did you mean {}/{len}?", network_of((addr, len)))),
            );
        }
        Ok((addr, len))
    }

    /// `( prefix, prefix, ... )`; the caller has checked that `(` comes next.
    fn prefix_list(&mut self, what: &str) -> PResult<Vec<Prefix>> {
        let open = self.bump();
        let mut list = Vec::new();
        if self.peek().tok == Tok::RParen {
            return Err(self.fail(
                &open,
                format!("empty mobile network prefix list in {what}"),
                Some("leave out the parentheses when there are no prefixes".into()),
            ));
        }
        loop {
            list.push(self.prefix(what, true)?);
            let t = self.peek().clone();
            match t.tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(list);
                }
                _ => {
                    return Err(self.expected(&t, "',' or ')' in the prefix list", what));
                }
            }
        }
    }

    fn number(&mut self, what: &str, max: u64, unit: &str) -> PResult<u64> {
        let (t, w) = self.value("a number", what)?;
        match parse_uint(&w) {
            Ok(n) if n <= max => Ok(n),
            Ok(_) | Err(UintError::TooLarge) => Err(self.fail(
                &t,
                format!("{what} value {w} out of range (0..={max}{unit})"),
                None,
            )),
            Err(UintError::NotNumber) => {
                let help = w
                    .starts_with('-')
                    .then(|| "negative values are not allowed".to_string());
                Err(self.fail(&t, format!("invalid number {w:?} in {what}"), help))
            }
        }
    }

    fn seconds(&mut self, what: &str) -> PResult<Duration> {
        let (t, w) = self.value("a number of seconds", what)?;
        match parse_seconds(&w) {
            Some(d) => Ok(d),
            None => Err(self.fail(
                &t,
                format!("invalid number of seconds {w:?} in {what} (expected e.g. 1.5)"),
                None,
            )),
        }
    }

    fn boolean(&mut self, what: &str) -> PResult<bool> {
        let (t, w) = self.value("enabled or disabled", what)?;
        if let Some(b) = bool_word(&w) {
            return Ok(b);
        }
        let help = bool_word(&w.to_ascii_lowercase()).map(|_| {
            format!(
                "booleans are case-sensitive: write {:?}",
                w.to_ascii_lowercase()
            )
        });
        Err(self.fail(
            &t,
            format!("invalid boolean {w:?} in {what} (expected enabled or disabled)"),
            help,
        ))
    }

    fn role_of(&mut self, t: &Token, w: &str, what: &str) -> PResult<NodeRole> {
        match w {
            "CN" => Ok(NodeRole::Cn),
            "HA" => Ok(NodeRole::Ha),
            "MN" => Ok(NodeRole::Mn),
            _ => {
                let up = w.to_ascii_uppercase();
                let help = matches!(up.as_str(), "CN" | "HA" | "MN")
                    .then(|| format!("roles are case-sensitive: write {up}"));
                Err(self.fail(
                    t,
                    format!("invalid node role {w:?} in {what} (expected CN, HA or MN)"),
                    help,
                ))
            }
        }
    }

    fn acl_action(&mut self, what: &str) -> PResult<AclAction> {
        let (t, w) = self.value("allow, deny or a status number", what)?;
        if let Some(b) = bool_word(&w) {
            return Ok(if b { AclAction::Allow } else { AclAction::Deny });
        }
        match parse_uint(&w) {
            Ok(n) if n <= 255 => Ok(AclAction::Status(n as u8)),
            Ok(_) | Err(UintError::TooLarge) => Err(self.fail(
                &t,
                format!("{what} status {w} out of range (0..=255)"),
                None,
            )),
            Err(UintError::NotNumber) => {
                let help = bool_word(&w.to_ascii_lowercase()).map(|_| {
                    format!(
                        "keywords are case-sensitive: write {:?}",
                        w.to_ascii_lowercase()
                    )
                });
                Err(self.fail(
                    &t,
                    format!(
                        "invalid {what} action {w:?} (expected allow, deny or a Binding \
                         Acknowledgement status 0..=255)"
                    ),
                    help,
                ))
            }
        }
    }

    // --- statements ---

    /// Remembers where a single-valued directive was set; warns when it is set twice.
    fn scalar(&mut self, kw: &Token, name: &'static str) {
        let loc = self.loc(kw);
        if let Some(prev) = self.ctx.seen.insert(name, loc) {
            self.warn(
                kw,
                format!("{name} is set again; this overrides the value at {prev}"),
                None,
            );
        }
    }

    fn bool_stmt(&mut self, kw: &Token, name: &'static str) -> PResult<bool> {
        let v = self.boolean(name)?;
        self.semi()?;
        self.scalar(kw, name);
        Ok(v)
    }

    fn num_stmt(&mut self, kw: &Token, name: &'static str, max: u64, unit: &str) -> PResult<u64> {
        let v = self.number(name, max, unit)?;
        self.semi()?;
        self.scalar(kw, name);
        Ok(v)
    }

    fn u32_stmt(&mut self, kw: &Token, name: &'static str, max: u32) -> PResult<u32> {
        let v = self.num_stmt(kw, name, max.into(), " seconds")?;
        Ok(u32::try_from(v).unwrap_or(max))
    }

    fn secs_stmt(&mut self, kw: &Token, name: &'static str) -> PResult<Duration> {
        let v = self.seconds(name)?;
        self.semi()?;
        self.scalar(kw, name);
        Ok(v)
    }

    fn unknown(&mut self, kw: &Token, w: &str, block: Option<&str>, known: &[&str]) -> Fail {
        if UNSUPPORTED.contains(&w) {
            return self.fail(
                kw,
                format!("UMIP directive {w:?} is not supported by hagent"),
                Some("remove it; hagent has no equivalent".into()),
            );
        }
        let message = match block {
            None => format!("unknown directive {w:?}"),
            Some(b) => format!("unknown {b} option {w:?}"),
        };
        let help = if let Some(c) = known.iter().find(|c| c.eq_ignore_ascii_case(w)) {
            Some(format!("keywords are case-sensitive: write {c:?}"))
        } else if w == "include" {
            Some("include is only allowed at the top level".into())
        } else if let Some((_, b)) = BLOCK_ONLY.iter().find(|(k, _)| block.is_none() && *k == w) {
            Some(format!("{w:?} is only valid inside {b}"))
        } else if RADVD_WORDS.contains(&w) {
            Some(
                "this looks like radvd.conf syntax; router advertisement settings belong in \
                 radvd.conf, not mip6d.conf"
                    .into(),
            )
        } else if SETKEY_WORDS.contains(&w) {
            Some(
                "this looks like setkey(8) syntax; security associations belong in \
                 setkey.conf, mip6d.conf only has IPsecPolicySet blocks"
                    .into(),
            )
        } else {
            closest(w, known).map(|c| format!("did you mean {c:?}?"))
        };
        self.fail(kw, message, help)
    }

    fn directive(&mut self, kw: &Token, word: &str) -> PResult<()> {
        let canonical = TOP_ALIASES
            .iter()
            .find(|(a, _)| *a == word)
            .map_or(word, |(_, u)| *u);
        let first = self.peek().clone();
        self.directive_inner(kw, word)?;
        self.not_acted_on(kw, canonical, &first);
        Ok(())
    }

    /// Warns that `name` (just parsed) is not acted on, unless it is a boolean turned off.
    fn not_acted_on(&mut self, kw: &Token, name: &str, first: &Token) {
        let Some((_, instead)) = NOT_ACTED_ON.iter().find(|(n, _)| *n == name) else {
            return;
        };
        if matches!(&first.tok, Tok::Word(w) if OFF_WORDS.contains(&w.as_str())) {
            return;
        }
        self.warn(
            kw,
            format!("{name} is not acted on by hagent: {instead}; ignored"),
            None,
        );
    }

    fn directive_inner(&mut self, kw: &Token, word: &str) -> PResult<()> {
        let name = match TOP_ALIASES.iter().find(|(a, _)| *a == word) {
            Some((alias, umip)) => {
                self.warn(
                    kw,
                    format!("{alias:?} is not a UMIP keyword; read as UMIP's {umip:?}"),
                    Some(format!("write {umip}")),
                );
                *umip
            }
            None => word,
        };
        match name {
            "include" => {
                let (pt, pattern) = self.string("include")?;
                if self.peek().tok == Tok::Semi {
                    self.bump();
                }
                self.include(&pt, &pattern);
            }
            "NodeConfig" => {
                let (t, w) = self.value("CN, HA or MN", "NodeConfig")?;
                let role = self.role_of(&t, &w, "NodeConfig")?;
                self.semi()?;
                self.scalar(kw, "NodeConfig");
                self.ctx.cfg.node = role;
                self.ctx.node_loc = Some(self.loc(kw));
            }
            "DebugLevel" => {
                let v = self.num_stmt(kw, "DebugLevel", MAX_DEBUG_LEVEL.into(), "")?;
                self.ctx.cfg.debug_level = v as u8;
            }
            "DebugLogFile" => {
                let (t, s) = self.string("DebugLogFile")?;
                if s.is_empty() {
                    return Err(self.fail(&t, "empty file name in DebugLogFile".into(), None));
                }
                self.semi()?;
                self.scalar(kw, "DebugLogFile");
                self.ctx.cfg.debug_log_file = Some(PathBuf::from(s));
            }
            "Interface" => self.interface(kw)?,
            "UseMnHaIPsec" => self.ctx.cfg.use_mn_ha_ipsec = self.bool_stmt(kw, "UseMnHaIPsec")?,
            "KeyMngMobCapability" => {
                self.ctx.cfg.key_mng_mob_capability = self.bool_stmt(kw, "KeyMngMobCapability")?;
            }
            "TunnelPayloadForceSANego" => {
                self.ctx.cfg.tunnel_payload_force_sa_nego =
                    self.bool_stmt(kw, "TunnelPayloadForceSANego")?;
            }
            "IPsecPolicySet" => self.ipsec_policy_set(kw)?,
            "NonVolatileBindingCache" => {
                self.ctx.cfg.non_volatile_binding_cache =
                    Some(self.bool_stmt(kw, "NonVolatileBindingCache")?);
            }
            "DoRouteOptimizationCN" => {
                self.ctx.cfg.do_route_optimization_cn =
                    self.bool_stmt(kw, "DoRouteOptimizationCN")?;
            }
            "CnBindingPolicySet" => {
                let open = self.expect_lbrace()?;
                while let Some((k, w)) = self.block_next(&open, "CnBindingPolicySet", &[]) {
                    if self.cn_binding_policy(&k, &w).is_err() {
                        self.recover(&[]);
                    }
                }
            }
            "UsePolicyModule" => {
                let (t, module) = self.string("UsePolicyModule")?;
                self.semi()?;
                self.error(
                    &t,
                    format!(
                        "UsePolicyModule {module:?}: policy plugins (dlopen'ed shared objects) \
                         are not supported by hagent"
                    ),
                    Some(
                        "express binding policy with BindingAclPolicy (per home address: \
                         allow, deny or a BA status, plus NEMO prefixes), \
                         DefaultBindingAclPolicy and HaMaxBindingLife, and remove this line"
                            .into(),
                    ),
                );
            }
            "UseMovementModule" => {
                let t = self.peek().clone();
                match &t.tok {
                    Tok::Word(w) if w == "internal" => {
                        self.bump();
                    }
                    Tok::Str(_) => {
                        self.bump();
                    }
                    _ => return Err(self.expected(&t, "internal or a quoted path", name)),
                }
                self.semi()?;
                self.warn(
                    kw,
                    "UseMovementModule is ignored (UMIP ignores it too)".into(),
                    None,
                );
            }
            "BindingAclPolicy" => {
                let hoa = self.addr("BindingAclPolicy")?;
                self.no_prefix("BindingAclPolicy")?;
                let mnps = if self.peek().tok == Tok::LParen {
                    self.prefix_list("BindingAclPolicy")?
                } else {
                    Vec::new()
                };
                let action = self.acl_action("BindingAclPolicy")?;
                self.semi()?;
                let loc = self.loc(kw);
                self.ctx.cfg.binding_acl.push(AclEntry {
                    hoa,
                    mnps,
                    action,
                    loc,
                });
            }
            "DefaultBindingAclPolicy" => {
                let a = self.acl_action("DefaultBindingAclPolicy")?;
                self.semi()?;
                self.scalar(kw, "DefaultBindingAclPolicy");
                self.ctx.cfg.default_acl = a;
            }
            "HaMaxBindingLife" => {
                self.ctx.cfg.ha_max_binding_life =
                    self.u32_stmt(kw, "HaMaxBindingLife", MAX_BINDING_LIFETIME)?;
            }
            "HaAcceptMobRtr" => {
                self.ctx.cfg.ha_accept_mob_rtr = self.bool_stmt(kw, "HaAcceptMobRtr")?;
            }
            "HaServedPrefix" => {
                let p = self.prefix("HaServedPrefix", true)?;
                self.semi()?;
                self.ctx.cfg.ha_served_prefixes.push(p);
            }
            "SendMobPfxAdvs" => {
                self.ctx.cfg.send_mob_pfx_advs = self.bool_stmt(kw, "SendMobPfxAdvs")?;
            }
            "SendUnsolMobPfxAdvs" => {
                self.ctx.cfg.send_unsol_mob_pfx_advs = self.bool_stmt(kw, "SendUnsolMobPfxAdvs")?;
            }
            "MinMobPfxAdvInterval" => {
                self.ctx.cfg.min_mob_pfx_adv_interval =
                    self.u32_stmt(kw, "MinMobPfxAdvInterval", u32::MAX)?;
            }
            "MaxMobPfxAdvInterval" => {
                self.ctx.cfg.max_mob_pfx_adv_interval =
                    self.u32_stmt(kw, "MaxMobPfxAdvInterval", u32::MAX)?;
            }
            "MnHomeLink" => self.home_link(kw)?,
            "MnMaxHaBindingLife" => {
                self.ctx.cfg.mn_max_ha_binding_life =
                    self.u32_stmt(kw, "MnMaxHaBindingLife", MAX_BINDING_LIFETIME)?;
            }
            "MnMaxCnBindingLife" => {
                self.ctx.cfg.mn_max_cn_binding_life =
                    self.u32_stmt(kw, "MnMaxCnBindingLife", MAX_RR_BINDING_LIFETIME)?;
            }
            "MnRouterProbes" => {
                let v = self.num_stmt(kw, "MnRouterProbes", u32::MAX.into(), "")?;
                self.ctx.cfg.mn_router_probes = u32::try_from(v).unwrap_or(u32::MAX);
            }
            "MnRouterProbeTimeout" => {
                self.ctx.cfg.mn_router_probe_timeout =
                    self.secs_stmt(kw, "MnRouterProbeTimeout")?;
            }
            "MnDiscardHaParamProb" => {
                self.ctx.cfg.mn_discard_ha_param_prob =
                    self.bool_stmt(kw, "MnDiscardHaParamProb")?;
            }
            "OptimisticHandoff" => {
                self.ctx.cfg.optimistic_handoff = self.bool_stmt(kw, "OptimisticHandoff")?;
            }
            "DoRouteOptimizationMN" => {
                self.ctx.cfg.do_route_optimization_mn =
                    self.bool_stmt(kw, "DoRouteOptimizationMN")?;
            }
            "UseCnBuAck" => self.ctx.cfg.use_cn_bu_ack = self.bool_stmt(kw, "UseCnBuAck")?,
            "MnUseAllInterfaces" => {
                self.ctx.cfg.mn_use_all_interfaces = self.bool_stmt(kw, "MnUseAllInterfaces")?;
            }
            "SendMobPfxSols" => {
                self.ctx.cfg.send_mob_pfx_sols = self.bool_stmt(kw, "SendMobPfxSols")?;
            }
            "MobRtrUseExplicitMode" => {
                self.ctx.cfg.mob_rtr_use_explicit_mode =
                    self.bool_stmt(kw, "MobRtrUseExplicitMode")?;
            }
            "InitialBindackTimeoutFirstReg" => {
                self.ctx.cfg.initial_bindack_timeout_first_reg =
                    self.secs_stmt(kw, "InitialBindackTimeoutFirstReg")?;
            }
            "InitialBindackTimeoutReReg" => {
                self.ctx.cfg.initial_bindack_timeout_re_reg =
                    self.secs_stmt(kw, "InitialBindackTimeoutReReg")?;
            }
            "InitialSolicitTimer" => {
                self.ctx.cfg.initial_solicit_timer = self.secs_stmt(kw, "InitialSolicitTimer")?;
            }
            // UMIP 1.0 directives hagent checks and does not act on (see NOT_ACTED_ON).
            "NoHomeReturn" | "MnResetDhaadAtHome" | "MnFlushAllAtHome" => {
                let name = TOP_KEYWORDS
                    .iter()
                    .find(|k| **k == name)
                    .copied()
                    .unwrap_or("?");
                self.bool_stmt(kw, name)?;
            }
            "MnMaxHaConsecutiveResends" | "MnMaxCnConsecutiveResends" => {
                let name = TOP_KEYWORDS
                    .iter()
                    .find(|k| **k == name)
                    .copied()
                    .unwrap_or("?");
                self.num_stmt(kw, name, u32::MAX.into(), "")?;
            }
            "InterfaceInitialInitDelay" => {
                self.secs_stmt(kw, "InterfaceInitialInitDelay")?;
            }
            _ => return Err(self.unknown(kw, word, None, TOP_KEYWORDS)),
        }
        Ok(())
    }

    fn interface(&mut self, kw: &Token) -> PResult<()> {
        let (nt, name) = self.string("Interface")?;
        if !check_ifname(&name) {
            self.error(
                &nt,
                format!("invalid interface name {name:?} in Interface"),
                Some("Linux interface names are 1 to 15 bytes without '/', ':' or spaces".into()),
            );
        }
        let mut iface = UmipInterface {
            name,
            if_type: None,
            mn_if_preference: MAX_MN_IF_PREFERENCE,
            tunnel: false,
            loc: self.loc(kw),
        };
        if self.peek().tok == Tok::LBrace {
            let open = self.bump();
            while let Some((k, w)) = self.block_next(&open, "Interface", IFACE_KEYWORDS) {
                let first = self.peek().clone();
                if self.interface_option(&k, &w, &mut iface).is_err() {
                    self.recover(IFACE_KEYWORDS);
                } else {
                    self.not_acted_on(&k, &w, &first);
                }
            }
        } else {
            self.semi()?;
        }
        self.ctx.cfg.interfaces.push(iface);
        Ok(())
    }

    fn interface_option(&mut self, k: &Token, w: &str, iface: &mut UmipInterface) -> PResult<()> {
        match w {
            "IfType" => {
                let (t, v) = self.value("CN, HA or MN", "IfType")?;
                let role = self.role_of(&t, &v, "IfType")?;
                self.semi()?;
                iface.if_type = Some(role);
            }
            "MnIfPreference" => {
                let n = self.number("MnIfPreference", MAX_MN_IF_PREFERENCE.into(), "")?;
                self.semi()?;
                iface.mn_if_preference = n as u8;
            }
            "Tunnel" => {
                iface.tunnel = self.boolean("Tunnel")?;
                self.semi()?;
            }
            _ => return Err(self.unknown(k, w, Some("Interface"), IFACE_KEYWORDS)),
        }
        Ok(())
    }

    fn ipsec_policy_set(&mut self, kw: &Token) -> PResult<()> {
        let open = self.expect_lbrace()?;
        let errors_before = self.ctx.errors.len();
        let mut set = IpsecPolicySet {
            home_agent: Ipv6Addr::UNSPECIFIED,
            home_addresses: Vec::new(),
            policies: Vec::new(),
            loc: self.loc(kw),
        };
        let mut ha_loc: Option<Location> = None;
        let mut hoa_locs: Vec<Location> = Vec::new();
        while let Some((k, w)) = self.block_next(&open, "IPsecPolicySet", SET_KEYWORDS) {
            let r = self.ipsec_set_option(&k, &w, &mut set, &mut ha_loc, &mut hoa_locs);
            if r.is_err() {
                self.recover(SET_KEYWORDS);
            }
        }
        if self.ctx.errors.len() > errors_before {
            return Ok(()); // already reported; a half-read set would only add noise
        }
        let missing = if ha_loc.is_none() {
            Some("IPsecPolicySet has no HomeAgentAddress")
        } else if set.home_agent.is_unspecified() {
            Some("IPsecPolicySet: HomeAgentAddress must not be :: (unspecified)")
        } else if set.home_addresses.is_empty() {
            Some("IPsecPolicySet has no HomeAddress")
        } else if set.policies.is_empty() {
            Some("IPsecPolicySet has no IPsecPolicy line")
        } else {
            None
        };
        match missing {
            Some(m) => {
                let d = Diagnostic::at(&set.loc, m).with_help(
                    "a set needs HomeAgentAddress <ha>; HomeAddress <hoa>/<len>; and at least \
                     one IPsecPolicy <type> UseESP;",
                );
                self.ctx.error(d);
            }
            None => self.ctx.cfg.ipsec_policy_sets.push(set),
        }
        Ok(())
    }

    fn ipsec_set_option(
        &mut self,
        k: &Token,
        w: &str,
        set: &mut IpsecPolicySet,
        ha_loc: &mut Option<Location>,
        hoa_locs: &mut Vec<Location>,
    ) -> PResult<()> {
        let name = if w == "IPSecPolicy" {
            self.warn(
                k,
                "\"IPSecPolicy\" is not a UMIP keyword; read as UMIP's \"IPsecPolicy\"".into(),
                Some("write IPsecPolicy (lower-case 's')".into()),
            );
            "IPsecPolicy"
        } else {
            w
        };
        match name {
            "HomeAgentAddress" => {
                let a = self.addr("HomeAgentAddress")?;
                self.no_prefix("HomeAgentAddress")?;
                self.semi()?;
                if let Some(first) = ha_loc {
                    let first = first.to_string();
                    self.error(
                        k,
                        format!(
                            "IPsecPolicySet has more than one HomeAgentAddress (first at {first})"
                        ),
                        Some("use one IPsecPolicySet per home agent address".into()),
                    );
                } else {
                    set.home_agent = a;
                    *ha_loc = Some(self.loc(k));
                }
            }
            "HomeAddress" => {
                let p = self.prefix("HomeAddress", false)?;
                self.semi()?;
                if let Some(i) = set.home_addresses.iter().position(|(h, _)| *h == p.0) {
                    let first = hoa_locs[i].to_string();
                    self.error(
                        k,
                        format!(
                            "duplicate HomeAddress {} in IPsecPolicySet (first at {first})",
                            p.0
                        ),
                        None,
                    );
                } else {
                    set.home_addresses.push(p);
                    hoa_locs.push(self.loc(k));
                }
            }
            "IPsecPolicy" => {
                let pol = self.ipsec_policy(k)?;
                if let Some(first) = set.policies.iter().find(|p| p.kind == pol.kind) {
                    let first = first.loc.to_string();
                    self.error(
                        k,
                        format!(
                            "duplicate IPsecPolicy {} in this IPsecPolicySet (first at {first})",
                            pol.kind
                        ),
                        None,
                    );
                } else {
                    set.policies.push(pol);
                }
            }
            _ => return Err(self.unknown(k, w, Some("IPsecPolicySet"), SET_KEYWORDS)),
        }
        Ok(())
    }

    fn ipsec_policy(&mut self, kw: &Token) -> PResult<IpsecPolicy> {
        const TYPES: &str = "HomeRegBinding, Mh, MobPfxDisc, ICMP, any, TunnelHomeTesting, TunnelMh or TunnelPayload";
        let (tt, tw) = self.value("a policy type", "IPsecPolicy")?;
        let kind = match IpsecPolicyType::from_umip(&tw) {
            Some(kind) => kind,
            None if tw == "Mn" => {
                self.warn(
                    &tt,
                    "IPsecPolicy type \"Mn\" is not UMIP's spelling; read as UMIP's \"Mh\" \
                     (Mobility Header signalling)"
                        .into(),
                    Some("write Mh".into()),
                );
                IpsecPolicyType::Mh
            }
            None => {
                let names = IpsecPolicyType::ALL.map(IpsecPolicyType::as_str);
                let help = closest(&tw, &names).map(|c| format!("did you mean {c:?}?"));
                return Err(self.fail(
                    &tt,
                    format!("invalid IPsecPolicy type {tw:?} (expected {TYPES})"),
                    help,
                ));
            }
        };
        let mut protocols = Vec::new();
        loop {
            let p = match self.peek().word() {
                Some("UseESP") => IpsecProto::Esp,
                Some("UseAH") => IpsecProto::Ah,
                Some("UseIPComp") => IpsecProto::IpComp,
                _ => break,
            };
            let t = self.bump();
            if protocols.contains(&p) {
                self.warn(&t, format!("{} given twice", p.as_str()), None);
            } else {
                if p != IpsecProto::Esp {
                    self.warn(
                        &t,
                        format!(
                            "{}: UMIP builds without MULTIPROTO_MIGRATE reject this; only \
                             UseESP is generally supported",
                            p.as_str()
                        ),
                        None,
                    );
                }
                protocols.push(p);
            }
        }
        if protocols.is_empty() {
            let t = self.peek().clone();
            let what = format!("IPsecPolicy {kind}");
            let f = self.expected(&t, "a protocol (UseESP, UseAH or UseIPComp)", &what);
            if let (Some(w), Some(last)) = (t.word(), self.ctx.errors.last_mut()) {
                if ["UseESP", "UseAH", "UseIPComp"]
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(w))
                {
                    last.help = Some("keywords are case-sensitive: write UseESP".into());
                }
            }
            return Err(f);
        }
        let mut reqids = Vec::new();
        while reqids.len() < 2 {
            let w = match self.peek().word() {
                Some(w) if w.bytes().all(|b| b.is_ascii_digit()) => w.to_string(),
                _ => break,
            };
            let t = self.bump();
            match w.parse::<u32>() {
                Ok(n) => {
                    if let Err(e) = super::setkey::check_optional_reqid(n) {
                        return Err(self.fail(&t, format!("IPsecPolicy {e} (0 for none)"), None));
                    }
                    reqids.push(n)
                }
                Err(_) => {
                    return Err(self.fail(
                        &t,
                        format!("IPsecPolicy reqid {w} out of range (0..={})", u32::MAX),
                        None,
                    ));
                }
            }
        }
        let (reqid_to_ha, reqid_to_mn) = match reqids[..] {
            [a, b] => (a, b),
            [a] => (a, a),
            _ => (0, 0),
        };
        let allow = match self.peek().word().and_then(bool_word) {
            Some(b) => {
                self.bump();
                b
            }
            None => true,
        };
        self.semi()?;
        Ok(IpsecPolicy {
            kind,
            protocols,
            reqid_to_ha,
            reqid_to_mn,
            allow,
            loc: self.loc(kw),
        })
    }

    fn cn_binding_policy(&mut self, k: &Token, w: &str) -> PResult<()> {
        const WHAT: &str = "CnBindingPolicySet";
        let peer_hoa = self.addr_of(k, w, WHAT)?;
        let local_addr = if self.peek().word().and_then(bool_word).is_some() {
            None
        } else {
            Some(self.addr(WHAT)?)
        };
        let allow = self.boolean(WHAT)?;
        self.semi()?;
        let loc = self.loc(k);
        self.ctx.cfg.cn_binding_policies.push(CnBindingPolicy {
            peer_hoa,
            local_addr,
            allow,
            loc,
        });
        Ok(())
    }

    fn home_link(&mut self, kw: &Token) -> PResult<()> {
        let loc = self.loc(kw);
        self.ctx.home_link_locs.push(loc.clone());
        let (nt, name) = self.string("MnHomeLink")?;
        if !check_ifname(&name) {
            self.error(
                &nt,
                format!("invalid interface name {name:?} in MnHomeLink"),
                Some("Linux interface names are 1 to 15 bytes without '/', ':' or spaces".into()),
            );
        }
        let open = self.expect_lbrace()?;
        let errors_before = self.ctx.errors.len();
        let mut link = MnHomeLink {
            name,
            home_agent: Ipv6Addr::UNSPECIFIED,
            home_address: (Ipv6Addr::UNSPECIFIED, 0),
            mnps: Vec::new(),
            is_mob_rtr: false,
            home_prefix: None,
            use_alt_coa: false,
            ro_policies: Vec::new(),
            loc,
        };
        let mut seen: HashMap<&'static str, Location> = HashMap::new();
        while let Some((k, w)) = self.block_next(&open, "MnHomeLink", HOME_LINK_KEYWORDS) {
            let first = self.peek().clone();
            if self.home_link_option(&k, &w, &mut link, &mut seen).is_err() {
                self.recover(HOME_LINK_KEYWORDS);
            } else {
                self.not_acted_on(&k, &w, &first);
            }
        }
        if self.ctx.errors.len() > errors_before {
            return Ok(());
        }
        if !seen.contains_key("HomeAddress") {
            let d = Diagnostic::at(
                &link.loc,
                format!("MnHomeLink {:?} has no HomeAddress", link.name),
            )
            .with_help("UMIP requires HomeAddress <address>/<length>; in every MnHomeLink");
            self.ctx.error(d);
            return Ok(());
        }
        if !self.ctx.cfg.home_links.is_empty() {
            self.warn(
                kw,
                format!(
                    "MnHomeLink {:?} is not acted on by hagent: its mobile node has one home \
                     link, the first ({:?}); ignored",
                    link.name, self.ctx.cfg.home_links[0].name
                ),
                None,
            );
        }
        if !link.mnps.is_empty() {
            self.warn(
                kw,
                format!(
                    "the mobile network prefixes of HomeAddress in MnHomeLink {:?} are not acted \
                     on by hagent: its mobile node is not a mobile router; ignored",
                    link.name
                ),
                None,
            );
        }
        self.ctx.cfg.home_links.push(link);
        Ok(())
    }

    fn home_link_option(
        &mut self,
        k: &Token,
        w: &str,
        link: &mut MnHomeLink,
        seen: &mut HashMap<&'static str, Location>,
    ) -> PResult<()> {
        let mut once = |p: &mut Self, name: &'static str, help: &str| {
            let loc = p.loc(k);
            if let Some(first) = seen.insert(name, loc) {
                p.error(
                    k,
                    format!("{name} given twice in MnHomeLink (first at {first})"),
                    (!help.is_empty()).then(|| help.to_string()),
                );
            }
        };
        match w {
            "HomeAgentAddress" => {
                let a = self.addr("HomeAgentAddress")?;
                self.no_prefix("HomeAgentAddress")?;
                self.semi()?;
                once(self, "HomeAgentAddress", "");
                link.home_agent = a;
            }
            "HomeAddress" => {
                let p = self.prefix("HomeAddress", false)?;
                let mnps = if self.peek().tok == Tok::LParen {
                    self.prefix_list("HomeAddress")?
                } else {
                    Vec::new()
                };
                self.semi()?;
                once(
                    self,
                    "HomeAddress",
                    "define one MnHomeLink block per home address",
                );
                link.home_address = p;
                link.mnps = mnps;
            }
            "IsMobRtr" => {
                link.is_mob_rtr = self.boolean("IsMobRtr")?;
                self.semi()?;
            }
            "MnRoPolicy" => {
                let cn = if self.peek().word().and_then(bool_word).is_some() {
                    Ipv6Addr::UNSPECIFIED
                } else {
                    self.addr("MnRoPolicy")?
                };
                let route_optimize = self.boolean("MnRoPolicy")?;
                self.semi()?;
                link.ro_policies.push(MnRoPolicy { cn, route_optimize });
            }
            "HomePrefix" => {
                let p = self.prefix("HomePrefix", true)?;
                self.semi()?;
                once(self, "HomePrefix", "");
                link.home_prefix = Some(p);
            }
            "UseAltCoa" => {
                link.use_alt_coa = self.boolean("UseAltCoa")?;
                self.semi()?;
            }
            "HaServedPrefix" => {
                return Err(self.fail(
                    k,
                    "HaServedPrefix is a home-agent directive and is not valid inside MnHomeLink"
                        .into(),
                    Some(
                        "a mobile router lists its prefixes after HomeAddress: HomeAddress \
                          <hoa>/64 (<mnp>/64, ...);"
                            .into(),
                    ),
                ));
            }
            _ => return Err(self.unknown(k, w, Some("MnHomeLink"), HOME_LINK_KEYWORDS)),
        }
        Ok(())
    }

    // --- include ---

    fn include(&mut self, pt: &Token, pattern: &str) {
        let level = self.ctx.stack.len().saturating_sub(1);
        if level >= MAX_INCLUDE_DEPTH {
            self.error(
                pt,
                format!("include {pattern:?}: more than {MAX_INCLUDE_DEPTH} nested include levels"),
                Some("UMIP stops at 5 levels too; include the files from a shallower level".into()),
            );
            return;
        }
        if pattern.is_empty() {
            self.error(pt, "include needs a file name or pattern".into(), None);
            return;
        }
        let base = self
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let files = match expand_include(&base, pattern) {
            Ok(files) => files,
            Err(msg) => {
                self.error(pt, format!("include {pattern:?}: {msg}"), None);
                return;
            }
        };
        if files.is_empty() {
            self.warn(pt, format!("include {pattern:?} matches no file"), None);
            return;
        }
        for f in files {
            if self.ctx.aborted {
                return;
            }
            let canon = canonical(&f);
            if let Some(i) = self.ctx.stack.iter().position(|(c, _)| *c == canon) {
                let mut chain: Vec<String> = self.ctx.stack[i..]
                    .iter()
                    .map(|(_, shown)| shown.display().to_string())
                    .collect();
                chain.push(f.display().to_string());
                self.error(pt, format!("include cycle: {}", chain.join(" -> ")), None);
                continue;
            }
            let text = match read_config(&f) {
                Ok(text) => text,
                Err(ReadError::Io(e)) => {
                    self.error(
                        pt,
                        format!("include {pattern:?}: cannot read {}: {e}", f.display()),
                        None,
                    );
                    continue;
                }
                Err(e) => {
                    self.ctx.error(e.into_diagnostic(&f));
                    continue;
                }
            };
            self.ctx.stack.push((canon, f.clone()));
            parse_text(self.ctx, &text, &f);
            self.ctx.stack.pop();
        }
    }
}

/// Resolves an include pattern relative to `base`. `*` and `?` are allowed in the last path
/// component only. A literal name is returned as is (reading it reports a missing file). A
/// pattern returns the matching regular files in sorted order; as with glob(3), names starting
/// with '.' only match when the pattern starts with '.'.
fn expand_include(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if pattern.contains('[') {
        return Err("character classes ('[...]') are not supported; use '*' and '?'".into());
    }
    let p = Path::new(pattern);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let Some(name) = full.file_name().and_then(|n| n.to_str()) else {
        return Err("the pattern does not name a file".into());
    };
    let name = name.to_string();
    let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err("wildcards are only supported in the last path component".into());
    }
    if !name.contains(['*', '?']) {
        return Ok(vec![full]);
    }
    let read_from = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir.as_path()
    };
    let entries = fs::read_dir(read_from)
        .map_err(|e| format!("cannot read directory {}: {e}", read_from.display()))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(s) = file_name.to_str() else {
            continue;
        };
        if s.starts_with('.') && !name.starts_with('.') {
            continue;
        }
        if !wildcard_match(&name, s) {
            continue;
        }
        let path = dir.join(s);
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters, `?` exactly one.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The home agent `mip6d.conf` from the talk (shared/seed), verbatim: the spaces are U+00A0
    /// as copied from the slides, and line 12 has the typo `coo1` (letters o, not zeros).
    const SEED_HA: &str = r#"NodeConfig HA;
DebugLevel 10;
# interface on the home link
Interface "eth0";
# only accept binding from known hosts (no PKI)
BindAclPolicy 2001:db8:bee5::dead:face allow;
DefaultBindPolicy deny;
# encryption parameters
UseMnHaIPsec enabled;
KeyMngMobCapability disabled;
IPsecPolicySet {
  HomeAgentAddress 2001:db8:bee5::coo1:babe;
  HomeAddress 2001:db8:bee5::dead:face/64;
  IPSecPolicy Mn UseESP 10;
  IPSecPolicy TunnelPayload UseESP 11;
}
"#;

    /// The mobile node `mip6d.conf` from the talk, verbatim: „typographic“ quotes, U+00A0 spaces
    /// and the same `coo1` typo on lines 7 and 13.
    const SEED_MN: &str = r#"NodeConfig MN;
DebugLevel 10;
Interface "eth0"{
  MnIfPreference 1;
}
MnHomeLink „eth0“ {
  HomeAgentAddress 2001:db8:bee5::coo1:babe;
  HomeAddress 2001:db8:bee5::dead:face/64;
}
UseMnHaIPsec enabled;
KeyMngMobCapability disabled;
IPsecPolicySet {
  HomeAgentAddress 2001:db8:bee5::coo1:babe;
  HomeAddress 2001:db8:bee5::dead:face/64;
  IPSecPolicy Mn UseESP 10;
  IPSecPolicy TunnelPayload UseESP 11;
}  
"#;

    fn origin() -> &'static Path {
        Path::new("mip6d.conf")
    }

    fn ok(text: &str) -> UmipConfig {
        parse_str(text, origin()).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse_str(text, origin()) {
            Ok(c) => panic!("expected an error, got {c:#?}"),
            Err(e) => e,
        }
    }

    /// Exactly one error; returns it.
    fn one_err(text: &str) -> Diagnostic {
        let e = err(text);
        assert_eq!(e.errors.len(), 1, "expected exactly one error, got:\n{e}");
        e.errors[0].clone()
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The first word (the directive) of every warning that contains `needle`.
    fn named<'a>(warnings: &'a [Diagnostic], needle: &str) -> Vec<&'a str> {
        warnings
            .iter()
            .filter(|w| w.message.contains(needle))
            .map(|w| w.message.split(' ').next().unwrap_or(""))
            .collect()
    }

    fn warned(warnings: &[Diagnostic], line: u32, col: u32, needle: &str) -> bool {
        warnings
            .iter()
            .any(|w| w.line == line && w.column == col && w.message.contains(needle))
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("umip-test-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    // --- the seed configs ---

    #[test]
    fn seed_ha_verbatim_reports_the_typo() {
        assert!(
            SEED_HA.contains('\u{a0}'),
            "the seed must keep its no-break spaces"
        );
        let e = one_err(SEED_HA);
        assert_eq!(
            e.to_string(),
            "mip6d.conf:12:20: invalid IPv6 address \"2001:db8:bee5::coo1:babe\" in HomeAgentAddress"
        );
        assert!(
            e.help
                .as_deref()
                .unwrap()
                .contains("2001:db8:bee5::c001:babe"),
            "{e:?}"
        );
    }

    #[test]
    fn seed_ha_fixed_parses_with_talk_spelling_warnings() {
        let cfg = ok(&SEED_HA.replace("coo1", "c001"));
        assert_eq!(cfg.node, NodeRole::Ha);
        assert_eq!(cfg.debug_level, 10);
        assert_eq!(cfg.interfaces.len(), 1);
        assert_eq!(cfg.interfaces[0].name, "eth0");
        assert_eq!(cfg.interfaces[0].loc.line, 4);
        assert_eq!(cfg.binding_acl.len(), 1);
        assert_eq!(cfg.binding_acl[0].hoa, a("2001:db8:bee5::dead:face"));
        assert!(cfg.binding_acl[0].mnps.is_empty());
        assert_eq!(cfg.binding_acl[0].action, AclAction::Allow);
        assert_eq!(cfg.default_acl, AclAction::Deny);
        assert!(cfg.use_mn_ha_ipsec);
        assert!(!cfg.key_mng_mob_capability);
        assert_eq!(cfg.ipsec_policy_sets.len(), 1);
        let set = &cfg.ipsec_policy_sets[0];
        assert_eq!(set.home_agent, a("2001:db8:bee5::c001:babe"));
        assert_eq!(
            set.home_addresses,
            vec![(a("2001:db8:bee5::dead:face"), 64)]
        );
        assert_eq!(set.policies.len(), 2);
        assert_eq!(set.policies[0].kind, IpsecPolicyType::Mh);
        assert_eq!(set.policies[0].protocols, vec![IpsecProto::Esp]);
        assert_eq!(
            (set.policies[0].reqid_to_ha, set.policies[0].reqid_to_mn),
            (10, 10)
        );
        assert!(set.policies[0].allow);
        assert_eq!(set.policies[1].kind, IpsecPolicyType::TunnelPayload);
        assert_eq!(
            (set.policies[1].reqid_to_ha, set.policies[1].reqid_to_mn),
            (11, 11)
        );
        assert_eq!(cfg.home_agent_interfaces().count(), 1);

        let w = &cfg.warnings;
        assert!(warned(w, 1, 11, "U+00A0"), "{w:#?}");
        assert!(warned(w, 6, 1, "UMIP's \"BindingAclPolicy\""), "{w:#?}");
        assert!(
            warned(w, 7, 1, "UMIP's \"DefaultBindingAclPolicy\""),
            "{w:#?}"
        );
        assert!(warned(w, 14, 3, "UMIP's \"IPsecPolicy\""), "{w:#?}");
        assert!(warned(w, 15, 3, "UMIP's \"IPsecPolicy\""), "{w:#?}");
        assert!(warned(w, 14, 15, "UMIP's \"Mh\""), "{w:#?}");
        assert_eq!(w.len(), 6, "{w:#?}");
    }

    #[test]
    fn seed_mn_verbatim_reports_both_typos_and_warns_about_quotes() {
        assert!(SEED_MN.contains('\u{201E}') && SEED_MN.contains('\u{201C}'));
        let e = err(SEED_MN);
        let shown: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "mip6d.conf:7:20: invalid IPv6 address \"2001:db8:bee5::coo1:babe\" in HomeAgentAddress",
                "mip6d.conf:13:20: invalid IPv6 address \"2001:db8:bee5::coo1:babe\" in HomeAgentAddress",
            ]
        );
        assert!(
            warned(&e.warnings, 6, 12, "typographic quotes"),
            "{:#?}",
            e.warnings
        );
    }

    #[test]
    fn seed_mn_fixed_parses() {
        let cfg = ok(&SEED_MN.replace("coo1", "c001"));
        assert_eq!(cfg.node, NodeRole::Mn);
        assert_eq!(cfg.interfaces[0].name, "eth0");
        assert_eq!(cfg.interfaces[0].mn_if_preference, 1);
        assert_eq!(cfg.home_links.len(), 1);
        let hl = &cfg.home_links[0];
        assert_eq!(hl.name, "eth0");
        assert_eq!(hl.home_agent, a("2001:db8:bee5::c001:babe"));
        assert_eq!(hl.home_address, (a("2001:db8:bee5::dead:face"), 64));
        assert_eq!(cfg.ipsec_policy_sets.len(), 1);
        let w = &cfg.warnings;
        assert!(warned(w, 6, 12, "read as \"eth0\""), "{w:#?}");
        assert!(warned(w, 15, 3, "UMIP's \"IPsecPolicy\""), "{w:#?}");
        assert!(warned(w, 15, 15, "UMIP's \"Mh\""), "{w:#?}");
    }

    // --- directives ---

    #[test]
    fn defaults_are_umips() {
        let cfg = ok("");
        assert_eq!(cfg, UmipConfig::default());
        assert_eq!(cfg.node, NodeRole::Cn);
        assert_eq!(cfg.debug_level, 0);
        assert_eq!(cfg.default_acl, AclAction::Allow);
        assert_eq!(cfg.ha_max_binding_life, 262_140);
        assert!(cfg.use_mn_ha_ipsec);
        assert!(!cfg.key_mng_mob_capability);
        assert!(cfg.tunnel_payload_force_sa_nego);
        assert!(!cfg.ha_accept_mob_rtr);
        assert!(cfg.send_mob_pfx_advs && cfg.send_unsol_mob_pfx_advs);
        assert_eq!(
            (cfg.min_mob_pfx_adv_interval, cfg.max_mob_pfx_adv_interval),
            (600, 86_400)
        );
        assert!(cfg.do_route_optimization_cn && cfg.do_route_optimization_mn);
        assert_eq!(cfg.mn_max_ha_binding_life, 262_140);
        assert_eq!(cfg.mn_max_cn_binding_life, 420);
        assert_eq!(
            cfg.initial_bindack_timeout_first_reg,
            Duration::from_millis(1500)
        );
        assert_eq!(cfg.initial_bindack_timeout_re_reg, Duration::from_secs(1));
        assert!(cfg.send_mob_pfx_sols && cfg.mob_rtr_use_explicit_mode);
        assert!(!cfg.mn_use_all_interfaces && !cfg.use_cn_bu_ack && !cfg.optimistic_handoff);
        assert!(cfg.warnings.is_empty());
    }

    const FULL_HA: &str = r#"# every home agent directive
NodeConfig HA;
DebugLevel 3;
DebugLogFile "/var/log/mip6d.log";
Interface "eth0";
Interface "eth1" {
    IfType CN;
    MnIfPreference 2;
    Tunnel disabled;
};
UseMnHaIPsec enabled;
KeyMngMobCapability enabled;
TunnelPayloadForceSANego disabled;
HaMaxBindingLife 3600;
HaAcceptMobRtr enabled;
HaServedPrefix 2001:db8:100::/40;
HaServedPrefix 2001:db8:200::/40;
SendMobPfxAdvs disabled;
SendUnsolMobPfxAdvs off;
MinMobPfxAdvInterval 700;
MaxMobPfxAdvInterval 80000;
NonVolatileBindingCache disabled;
DoRouteOptimizationCN false;
DefaultBindingAclPolicy deny;
BindingAclPolicy 2001:db8::1 allow;
BindingAclPolicy 2001:db8::2 (2001:db8:1::/48, 2001:db8:2::/64) allow;
BindingAclPolicy 2001:db8::3 deny;
BindingAclPolicy 2001:db8::4 135;
IPsecPolicySet {
    HomeAgentAddress 2001:db8::ffff;
    HomeAddress 2001:db8::1/64;
    HomeAddress 2001:db8::2/64;
    IPsecPolicy HomeRegBinding UseESP 1 2;
    IPsecPolicy Mh UseESP 3;
    IPsecPolicy MobPfxDisc UseESP;
    IPsecPolicy ICMP UseESP 4 5 deny;
    IPsecPolicy any UseESP 6 enabled;
    IPsecPolicy TunnelHomeTesting UseESP;
    IPsecPolicy TunnelMh UseESP;
    IPsecPolicy TunnelPayload UseESP 7;
}
IPsecPolicySet {
    HomeAgentAddress 2001:db8::ffff;
    HomeAddress 2001:db8::3/64;
    IPsecPolicy Mh UseESP UseAH;
}
CnBindingPolicySet {
    2001:db8:9::1 enabled;
    2001:db8:9::2 2001:db8::ffff disabled;
}
"#;

    #[test]
    fn full_home_agent_config() {
        let cfg = ok(FULL_HA);
        assert_eq!(cfg.node, NodeRole::Ha);
        assert_eq!(cfg.debug_level, 3);
        assert_eq!(
            cfg.debug_log_file,
            Some(PathBuf::from("/var/log/mip6d.log"))
        );
        assert_eq!(cfg.interfaces.len(), 2);
        let eth1 = &cfg.interfaces[1];
        assert_eq!(
            (
                eth1.name.as_str(),
                eth1.if_type,
                eth1.mn_if_preference,
                eth1.tunnel
            ),
            ("eth1", Some(NodeRole::Cn), 2, false)
        );
        assert_eq!(cfg.interfaces[0].mn_if_preference, 10);
        let ha_ifs: Vec<&str> = cfg
            .home_agent_interfaces()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(ha_ifs, ["eth0"]);
        assert!(cfg.use_mn_ha_ipsec && cfg.key_mng_mob_capability);
        assert!(!cfg.tunnel_payload_force_sa_nego);
        assert_eq!(cfg.ha_max_binding_life, 3600);
        assert!(cfg.ha_accept_mob_rtr);
        assert_eq!(
            cfg.ha_served_prefixes,
            vec![(a("2001:db8:100::"), 40), (a("2001:db8:200::"), 40)]
        );
        assert!(!cfg.send_mob_pfx_advs && !cfg.send_unsol_mob_pfx_advs);
        assert_eq!(
            (cfg.min_mob_pfx_adv_interval, cfg.max_mob_pfx_adv_interval),
            (700, 80_000)
        );
        assert!(cfg.non_volatile_binding_cache == Some(false) && !cfg.do_route_optimization_cn);
        assert_eq!(cfg.default_acl, AclAction::Deny);
        let acl: Vec<(Ipv6Addr, usize, AclAction)> = cfg
            .binding_acl
            .iter()
            .map(|e| (e.hoa, e.mnps.len(), e.action))
            .collect();
        assert_eq!(
            acl,
            [
                (a("2001:db8::1"), 0, AclAction::Allow),
                (a("2001:db8::2"), 2, AclAction::Allow),
                (a("2001:db8::3"), 0, AclAction::Deny),
                (a("2001:db8::4"), 0, AclAction::Status(135)),
            ]
        );
        assert_eq!(cfg.binding_acl[1].mnps[1], (a("2001:db8:2::"), 64));
        assert_eq!(cfg.binding_acl[3].action.status_code(), 135);
        assert_eq!(AclAction::Deny.status_code(), 129);

        assert_eq!(cfg.ipsec_policy_sets.len(), 2);
        let s = &cfg.ipsec_policy_sets[0];
        assert_eq!(s.home_addresses.len(), 2);
        let kinds: Vec<IpsecPolicyType> = s.policies.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, IpsecPolicyType::ALL);
        let p = |i: usize| &s.policies[i];
        assert_eq!(
            (p(0).reqid_to_ha, p(0).reqid_to_mn, p(0).allow),
            (1, 2, true)
        );
        assert_eq!((p(1).reqid_to_ha, p(1).reqid_to_mn), (3, 3));
        assert_eq!((p(2).reqid_to_ha, p(2).reqid_to_mn), (0, 0));
        assert_eq!(
            (p(3).reqid_to_ha, p(3).reqid_to_mn, p(3).allow),
            (4, 5, false)
        );
        assert_eq!((p(4).reqid_to_ha, p(4).allow), (6, true));
        assert!(p(7).kind.is_tunnel() && !p(1).kind.is_tunnel());
        assert_eq!(
            cfg.ipsec_policy_sets[1].policies[0].protocols,
            vec![IpsecProto::Esp, IpsecProto::Ah]
        );
        assert_eq!(cfg.cn_binding_policies.len(), 2);
        assert_eq!(cfg.cn_binding_policies[0].local_addr, None);
        assert!(cfg.cn_binding_policies[0].allow);
        assert_eq!(
            cfg.cn_binding_policies[1].local_addr,
            Some(a("2001:db8::ffff"))
        );
        assert!(!cfg.cn_binding_policies[1].allow);

        // Warnings: UseAH, and each directive hagent does not act on, by name
        // (NonVolatileBindingCache is honoured).
        assert!(
            warned(&cfg.warnings, 45, 27, "UseAH"),
            "{:#?}",
            cfg.warnings
        );
        let ignored = named(&cfg.warnings, "is not acted on by hagent");
        for name in [
            "IfType",
            "KeyMngMobCapability",
            "CnBindingPolicySet",
            "MinMobPfxAdvInterval",
        ] {
            assert!(
                ignored.contains(&name),
                "{name} not warned: {:#?}",
                cfg.warnings
            );
        }
        assert_eq!(cfg.warnings.len(), ignored.len() + 1, "{:#?}", cfg.warnings);
    }

    /// The six UMIP 1.0 directives that were hard errors: each parses with UMIP's syntax, and
    /// each gets a warning naming it with its position; a boolean turned off gets none.
    #[test]
    fn umip_1_0_directives_parse_and_each_one_not_acted_on_is_named() {
        let cfg = ok(
            "NodeConfig MN;\nNoHomeReturn enabled;\nMnResetDhaadAtHome enabled;\n\
                      MnFlushAllAtHome enabled;\nMnMaxHaConsecutiveResends 5;\n\
                      MnMaxCnConsecutiveResends 3;\nInterfaceInitialInitDelay 0.5;\n\
                      MnFlushAllAtHome disabled;\n\
                      MnHomeLink \"eth0\" { HomeAgentAddress 2001:db8::1; HomeAddress 2001:db8::2/64; }\n",
        );
        for (line, name) in [
            (2, "NoHomeReturn"),
            (3, "MnResetDhaadAtHome"),
            (4, "MnFlushAllAtHome"),
            (5, "MnMaxHaConsecutiveResends"),
            (6, "MnMaxCnConsecutiveResends"),
            (7, "InterfaceInitialInitDelay"),
        ] {
            assert!(
                warned(&cfg.warnings, line, 1, &format!("{name} is not acted on")),
                "{name}: {:#?}",
                cfg.warnings
            );
        }
        // The seventh: line 8 sets MnFlushAllAtHome again (off: no "not acted on").
        assert!(
            warned(&cfg.warnings, 8, 1, "set again"),
            "{:#?}",
            cfg.warnings
        );
        assert_eq!(cfg.warnings.len(), 7, "{:#?}", cfg.warnings);
        // Bad values still get the usual diagnostics.
        let d = one_err("MnMaxHaConsecutiveResends lots;");
        assert!(d.to_string().starts_with("mip6d.conf:1:"), "{d}");
        let d = one_err("NoHomeReturn maybe;");
        assert!(d.message.contains("invalid boolean"), "{d}");
    }

    #[test]
    fn full_mobile_node_config() {
        let cfg = ok(r#"NodeConfig MN;
Interface "wlan0" { MnIfPreference 1; }
Interface "eth0" { MnIfPreference 2; IfType MN; Tunnel enabled; }
MnHomeLink "eth0" {
    HomeAgentAddress 2001:db8:1::1;
    HomeAddress 2001:db8:1::1234/64 (2001:db8:2::/64, 2001:db8:3::/64);
    IsMobRtr enabled;
    HomePrefix 2001:db8:1::/64;
    UseAltCoa enabled;
    MnRoPolicy 2001:db8:9::3 enabled;
    MnRoPolicy disabled;
}
MnHomeLink "eth0" {
    HomeAddress 2001:db8:1::1235/64;
}
MnMaxHaBindingLife 3600;
MnMaxCnBindingLife 300;
MnRouterProbes 2;
MnRouterProbeTimeout 0.25;
MnDiscardHaParamProb enabled;
OptimisticHandoff enabled;
DoRouteOptimizationMN disabled;
UseCnBuAck enabled;
MnUseAllInterfaces enabled;
SendMobPfxSols disabled;
MobRtrUseExplicitMode disabled;
InitialBindackTimeoutFirstReg 2.5;
InitialBindackTimeoutReReg 3;
InitialSolicitTimer 0.125;
UseMovementModule internal;
UseMnHaIPsec disabled;
"#);
        assert_eq!(cfg.node, NodeRole::Mn);
        assert!(cfg.interfaces[1].tunnel);
        assert_eq!(cfg.home_links.len(), 2);
        let hl = &cfg.home_links[0];
        assert_eq!(hl.home_agent, a("2001:db8:1::1"));
        assert_eq!(hl.home_address, (a("2001:db8:1::1234"), 64));
        assert_eq!(
            hl.mnps,
            vec![(a("2001:db8:2::"), 64), (a("2001:db8:3::"), 64)]
        );
        assert!(hl.is_mob_rtr && hl.use_alt_coa);
        assert_eq!(hl.home_prefix, Some((a("2001:db8:1::"), 64)));
        assert_eq!(
            hl.ro_policies,
            vec![
                MnRoPolicy {
                    cn: a("2001:db8:9::3"),
                    route_optimize: true
                },
                MnRoPolicy {
                    cn: Ipv6Addr::UNSPECIFIED,
                    route_optimize: false
                },
            ]
        );
        assert_eq!(cfg.home_links[1].home_agent, Ipv6Addr::UNSPECIFIED, "DHAAD");
        assert_eq!(cfg.mn_max_ha_binding_life, 3600);
        assert_eq!(cfg.mn_max_cn_binding_life, 300);
        assert_eq!(cfg.mn_router_probes, 2);
        assert_eq!(cfg.mn_router_probe_timeout, Duration::from_millis(250));
        assert!(cfg.mn_discard_ha_param_prob && cfg.optimistic_handoff);
        assert!(!cfg.do_route_optimization_mn);
        assert!(cfg.use_cn_bu_ack && cfg.mn_use_all_interfaces);
        assert!(!cfg.send_mob_pfx_sols && !cfg.mob_rtr_use_explicit_mode);
        assert_eq!(
            cfg.initial_bindack_timeout_first_reg,
            Duration::from_millis(2500)
        );
        assert_eq!(cfg.initial_bindack_timeout_re_reg, Duration::from_secs(3));
        assert_eq!(cfg.initial_solicit_timer, Duration::from_millis(125));
        assert!(!cfg.use_mn_ha_ipsec);
        // UseMovementModule, the second home link, the MNP list, and each directive hagent
        // does not act on, by name; none for the ones it does act on.
        let ignored = named(&cfg.warnings, "not acted on by hagent");
        for name in [
            "MnIfPreference",
            "MnRouterProbes",
            "OptimisticHandoff",
            "UseCnBuAck",
            "IsMobRtr",
            "MnRoPolicy",
            "UseAltCoa",
            "MnHomeLink",
        ] {
            assert!(
                ignored.contains(&name),
                "{name} not warned: {:#?}",
                cfg.warnings
            );
        }
        for acted in [
            "InitialBindackTimeoutFirstReg",
            "MnMaxHaBindingLife",
            "DebugLogFile",
        ] {
            assert!(
                !ignored.contains(&acted),
                "{acted} warned: {:#?}",
                cfg.warnings
            );
        }
        // A boolean turned off is what hagent does anyway: no warning.
        assert!(!cfg.do_route_optimization_mn);
        assert!(
            !ignored.contains(&"DoRouteOptimizationMN"),
            "{:#?}",
            cfg.warnings
        );
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.message.contains("UseMovementModule")),
            "{:#?}",
            cfg.warnings
        );
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.message.contains("prefixes of HomeAddress")),
            "{:#?}",
            cfg.warnings
        );
    }

    #[test]
    fn boolean_spellings() {
        for (word, value) in [
            ("enabled", true),
            ("true", true),
            ("on", true),
            ("allow", true),
            ("disabled", false),
            ("false", false),
            ("off", false),
            ("deny", false),
            ("block", false),
        ] {
            let cfg = ok(&format!("HaAcceptMobRtr {word};"));
            assert_eq!(cfg.ha_accept_mob_rtr, value, "{word}");
        }
    }

    #[test]
    fn seconds_parse_exactly() {
        assert_eq!(parse_seconds("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("0.000000001"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_seconds("1.1234567899"),
            Some(Duration::new(1, 123_456_789))
        );
        for bad in ["", ".5", "1.", "1.2.3", "-1", "1e3", "99999999999999999999"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
        let d = one_err("InitialBindackTimeoutFirstReg 1.5.2;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:31: invalid number of seconds \"1.5.2\" in InitialBindackTimeoutFirstReg (expected e.g. 1.5)"
        );
    }

    #[test]
    fn comments_whitespace_and_optional_block_semicolons() {
        let cfg = ok("\u{feff}# comment\r\nNodeConfig HA; # trailing comment\r\n\
                      Interface\t\"eth0\"{IfType HA;};;\nInterface \"eth1\" {}\n");
        assert_eq!(cfg.interfaces.len(), 2);
        assert_eq!(cfg.interfaces[0].if_type, Some(NodeRole::Ha));
        assert!(
            warned(&cfg.warnings, 3, 30, "stray ';'"),
            "{:#?}",
            cfg.warnings
        );
    }

    #[test]
    fn statements_may_span_lines() {
        let cfg = ok("BindingAclPolicy 2001:db8::1\n    (2001:db8:1::/48)\n    deny\n;\n");
        assert_eq!(cfg.binding_acl[0].action, AclAction::Deny);
        assert_eq!(cfg.binding_acl[0].mnps.len(), 1);
    }

    #[test]
    fn duplicate_scalar_warns() {
        let cfg = ok("DebugLevel 1;\nDebugLevel 2;\n");
        assert_eq!(cfg.debug_level, 2);
        assert!(warned(
            &cfg.warnings,
            2,
            1,
            "overrides the value at mip6d.conf:1:1"
        ));
    }

    #[test]
    fn host_bits_in_served_prefix_warn() {
        let cfg = ok("HaServedPrefix 2001:db8::1/48;");
        assert!(
            warned(&cfg.warnings, 1, 16, "host bits"),
            "{:#?}",
            cfg.warnings
        );
        assert_eq!(
            cfg.warnings[0].help.as_deref(),
            Some("did you mean 2001:db8::/48?")
        );
    }

    #[test]
    fn non_volatile_binding_cache_is_honoured() {
        let cfg = ok("NonVolatileBindingCache enabled;");
        assert_eq!(cfg.non_volatile_binding_cache, Some(true));
        assert!(cfg.warnings.is_empty(), "{:#?}", cfg.warnings);
        assert_eq!(
            ok("NonVolatileBindingCache disabled;").non_volatile_binding_cache,
            Some(false)
        );
        assert_eq!(ok("NodeConfig HA;").non_volatile_binding_cache, None);
    }

    // --- error paths ---

    #[test]
    fn unknown_directive_is_an_error() {
        let d = one_err("NodeConfig HA;\nFoo 1;\nDebugLevel 2;\n");
        assert_eq!(d.to_string(), "mip6d.conf:2:1: unknown directive \"Foo\"");
    }

    #[test]
    fn unknown_directive_hints() {
        let help = |text: &str| one_err(text).help.unwrap_or_default();
        assert_eq!(
            help("HaMaxBindingLifetime 10;"),
            "did you mean \"HaMaxBindingLife\"?"
        );
        assert_eq!(
            help("nodeconfig HA;"),
            "keywords are case-sensitive: write \"NodeConfig\""
        );
        assert!(help("AdvSendAdvert on;").contains("radvd.conf"));
        assert!(help("spdflush;").contains("setkey"));
        assert!(help("HomeAgentAddress 2001:db8::1;").contains("only valid inside"));
        let d = one_err("MnUseDsmip6 enabled;");
        assert!(d.message.contains("not supported by hagent"), "{d}");
        let d = one_err("Interface \"eth0\" { Tunel enabled; }");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:20: unknown Interface option \"Tunel\""
        );
        assert_eq!(d.help.as_deref(), Some("did you mean \"Tunnel\"?"));
    }

    #[test]
    fn missing_semicolon_at_end_of_line() {
        let d = one_err("NodeConfig HA\nDebugLevel 1;\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:14: missing ';' after \"NodeConfig HA\""
        );
        let d = one_err("Interface \"eth0\" {\n  MnIfPreference 1\n}\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:2:19: missing ';' after \"MnIfPreference 1\""
        );
        let d = one_err("HaServedPrefix 2001:db8::/48");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:29: missing ';' after \"HaServedPrefix 2001:db8::/48\""
        );
    }

    #[test]
    fn extra_token_instead_of_semicolon() {
        let d = one_err("DebugLevel 1 2;\nNodeConfig HA;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:14: expected ';' after \"DebugLevel 1\", found \"2\""
        );
        let d = one_err("DebugLevel = 3;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:12: expected a number in DebugLevel, found '='"
        );
        assert!(d.help.unwrap().contains("no '='"));
        let d = one_err("DebugLevel\nNodeConfig HA;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:11: missing a number in DebugLevel"
        );
    }

    #[test]
    fn unterminated_string() {
        let d = one_err("DebugLogFile \"/var/log/mip6d.log;\nNodeConfig HA;\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:14: unterminated string \"/var/log/mip6d.log; (missing closing '\"')"
        );
        let d = one_err("Interface \"eth0 {\n  MnIfPreference 1;\n}\n");
        assert_eq!(d.line, 1);
        assert!(d.message.starts_with("unterminated string"), "{d}");
        let d = one_err("Interface \"eth0\u{201C};");
        assert!(d.help.unwrap().contains("typographic"));
        assert!(!err("DebugLogFile \"abc").errors.is_empty());
    }

    #[test]
    fn typographic_quotes_variants() {
        for text in [
            "Interface \u{201E}eth0\u{201C};",
            "Interface \u{201C}eth0\u{201D};",
            "Interface \u{201D}eth0\u{201D};",
            "Interface \u{201E}eth0\";",
        ] {
            let cfg = ok(text);
            assert_eq!(cfg.interfaces[0].name, "eth0", "{text}");
            assert!(warned(&cfg.warnings, 1, 11, "typographic quotes"), "{text}");
        }
    }

    #[test]
    fn bad_prefix_lengths() {
        let d = one_err("HaServedPrefix 2001:db8::/129;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:27: invalid prefix length 129 in HaServedPrefix (must be 0..=128)"
        );
        let d = one_err(
            "IPsecPolicySet {\n  HomeAgentAddress 2001:db8::1;\n  HomeAddress 2001:db8::2/x;\n  IPsecPolicy Mh UseESP;\n}",
        );
        assert_eq!(
            d.to_string(),
            "mip6d.conf:3:27: invalid prefix length \"x\" in HomeAddress (must be a number 0..=128)"
        );
        let d = one_err("HaServedPrefix 2001:db8::;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:26: missing prefix length after 2001:db8:: in HaServedPrefix"
        );
        let d =
            one_err("BindingAclPolicy 2001:db8::1 (2001:db8:1::/99999999999999999999999) allow;");
        assert!(d.message.contains("invalid prefix length"), "{d}");
        let d = one_err("BindingAclPolicy 2001:db8::1/64 allow;");
        assert!(d.message.contains("without a prefix length"), "{d}");
        let d = one_err("BindingAclPolicy 2001:db8::1 () allow;");
        assert!(d.message.contains("empty"), "{d}");
        let d = one_err("BindingAclPolicy 2001:db8::1 (2001:db8:1::/64 2001:db8:2::/64) allow;");
        assert!(d.message.contains("expected ',' or ')'"), "{d}");
    }

    #[test]
    fn value_ranges() {
        let d = one_err("DebugLevel 11;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:12: DebugLevel value 11 out of range (0..=10)"
        );
        let d = one_err("HaMaxBindingLife 262141;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:18: HaMaxBindingLife value 262141 out of range (0..=262140 seconds)"
        );
        assert_eq!(ok("HaMaxBindingLife 262140;").ha_max_binding_life, 262_140);
        assert_eq!(ok("HaMaxBindingLife 0;").ha_max_binding_life, 0);
        let d = one_err("BindingAclPolicy 2001:db8::1 256;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:30: BindingAclPolicy status 256 out of range (0..=255)"
        );
        assert_eq!(
            ok("DefaultBindingAclPolicy 255;").default_acl,
            AclAction::Status(255)
        );
        let d = one_err("Interface \"eth0\" { MnIfPreference 11; }");
        assert!(
            d.message
                .contains("MnIfPreference value 11 out of range (0..=10)"),
            "{d}"
        );
        let d = one_err("MnMaxCnBindingLife 421;");
        assert!(d.message.contains("(0..=420 seconds)"), "{d}");
        let d = one_err("DebugLevel -1;");
        assert_eq!(d.message, "invalid number \"-1\" in DebugLevel");
        let d = one_err("DebugLevel 99999999999999999999999;");
        assert!(d.message.contains("out of range"), "{d}");
        let d = one_err(
            "IPsecPolicySet { HomeAgentAddress ::1; HomeAddress ::2/64; IPsecPolicy Mh UseESP 4294967296; }",
        );
        assert!(d.message.contains("reqid 4294967296 out of range"), "{d}");
        // One reqid rule for mip6d.conf, TOML and setkey.conf: 0 (none) or 1..=0x3fff.
        let d = one_err(
            "IPsecPolicySet { HomeAgentAddress ::1; HomeAddress ::2/64; IPsecPolicy Mh UseESP 16384; }",
        );
        assert!(
            d.message
                .contains("reqid 16384 is out of range: setkey allows 1 to 16383"),
            "{d}"
        );
    }

    #[test]
    fn invalid_words() {
        let d = one_err("UseMnHaIPsec yes;");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:14: invalid boolean \"yes\" in UseMnHaIPsec (expected enabled or disabled)"
        );
        let d = one_err("UseMnHaIPsec Enabled;");
        assert_eq!(
            d.help.as_deref(),
            Some("booleans are case-sensitive: write \"enabled\"")
        );
        let d = one_err("NodeConfig ha;");
        assert_eq!(
            d.help.as_deref(),
            Some("roles are case-sensitive: write HA")
        );
        let d = one_err("DefaultBindingAclPolicy maybe;");
        assert!(
            d.message
                .starts_with("invalid DefaultBindingAclPolicy action \"maybe\""),
            "{d}"
        );
        let d = one_err("BindingAclPolicy 192.0.2.1 allow;");
        assert_eq!(
            d.message,
            "invalid IPv6 address \"192.0.2.1\" in BindingAclPolicy"
        );
        assert!(d.help.unwrap().contains("IPv6"));
        let d = one_err("Interface eth0;");
        assert_eq!(
            d.help.as_deref(),
            Some("UMIP needs double quotes: Interface \"eth0\"")
        );
        let d = one_err("Interface \"this-name-is-too-long\";");
        assert!(d.message.contains("invalid interface name"), "{d}");
        let d = one_err("DebugLogFile \"\";");
        assert!(d.message.contains("empty file name"), "{d}");
        let d = one_err("NodeConfig HA;\n\"eth0\";");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:2:1: expected a directive, found string \"eth0\""
        );
        let d = one_err("NodeConfig HA;\nDebugLevel 1\u{7};");
        assert!(d.message.contains("control character"), "{d}");
    }

    #[test]
    fn use_policy_module_is_refused_with_an_alternative() {
        let d = one_err("UsePolicyModule \"/usr/lib/mip6d/policy.so\";");
        assert_eq!(d.line, 1);
        assert!(d.message.contains("not supported by hagent"), "{d}");
        assert!(d.help.unwrap().contains("BindingAclPolicy"));
    }

    #[test]
    fn ipsec_policy_errors() {
        let set = |body: &str| {
            format!(
                "IPsecPolicySet {{\n  HomeAgentAddress 2001:db8::ffff;\n  HomeAddress 2001:db8::1/64;\n{body}\n}}\n"
            )
        };
        let d = one_err(&set("  IPsecPolicy Mh 10;"));
        assert_eq!(
            d.to_string(),
            "mip6d.conf:4:18: expected a protocol (UseESP, UseAH or UseIPComp) in IPsecPolicy Mh, found \"10\""
        );
        let d = one_err(&set("  IPsecPolicy Mh useesp;"));
        assert_eq!(
            d.help.as_deref(),
            Some("keywords are case-sensitive: write UseESP")
        );
        let d = one_err(&set("  IPsecPolicy Mhh UseESP;"));
        assert!(
            d.message.starts_with("invalid IPsecPolicy type \"Mhh\""),
            "{d}"
        );
        assert_eq!(d.help.as_deref(), Some("did you mean \"Mh\"?"));
        let d = one_err(&set("  IPsecPolicy Mh UseESP;\n  IPsecPolicy Mh UseESP 3;"));
        assert_eq!(d.line, 5);
        assert!(d.message.contains("duplicate IPsecPolicy Mh"), "{d}");
        let d = one_err(&set(
            "  HomeAddress 2001:db8::1/128;\n  IPsecPolicy Mh UseESP;",
        ));
        assert!(
            d.message.contains("duplicate HomeAddress 2001:db8::1"),
            "{d}"
        );
        let d = one_err(&set(
            "  HomeAgentAddress 2001:db8::fffe;\n  IPsecPolicy Mh UseESP;",
        ));
        assert!(d.message.contains("more than one HomeAgentAddress"), "{d}");
        let d = one_err(&set("  IPsecPolicy Mh UseESP 1 2 3;"));
        assert!(d.message.contains("expected ';'"), "{d}");

        let d =
            one_err("IPsecPolicySet {\n  HomeAddress 2001:db8::1/64;\n  IPsecPolicy Mh UseESP;\n}");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:1: IPsecPolicySet has no HomeAgentAddress"
        );
        let d = one_err(
            "IPsecPolicySet {\n  HomeAgentAddress 2001:db8::ffff;\n  IPsecPolicy Mh UseESP;\n}",
        );
        assert!(d.message.contains("no HomeAddress"), "{d}");
        let d = one_err(&set(""));
        assert!(d.message.contains("no IPsecPolicy line"), "{d}");
        let d = one_err(
            "IPsecPolicySet { HomeAgentAddress ::; HomeAddress ::1/64; IPsecPolicy Mh UseESP; }",
        );
        assert!(d.message.contains("must not be ::"), "{d}");
        let d = one_err("IPsecPolicySet HomeAgentAddress ::1;");
        assert!(
            d.message
                .starts_with("expected '{' after \"IPsecPolicySet\""),
            "{d}"
        );
    }

    #[test]
    fn ipsec_sets_ignored_without_use_mn_ha_ipsec() {
        let cfg = ok(
            "UseMnHaIPsec disabled;\nIPsecPolicySet { HomeAgentAddress ::1; HomeAddress ::2/64; IPsecPolicy Mh UseESP; }",
        );
        assert!(
            warned(&cfg.warnings, 2, 1, "no effect"),
            "{:#?}",
            cfg.warnings
        );
    }

    #[test]
    fn semantic_duplicates_and_overlaps() {
        let d = one_err("Interface \"eth0\";\nInterface \"eth0\" { MnIfPreference 1; }\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:2:1: duplicate Interface \"eth0\" (already declared at mip6d.conf:1:1)"
        );
        let d =
            one_err("BindingAclPolicy 2001:db8::1 allow;\nBindingAclPolicy 2001:db8:0::1 deny;\n");
        assert_eq!(d.line, 2);
        assert!(
            d.message
                .contains("duplicate BindingAclPolicy for home address 2001:db8::1"),
            "{d}"
        );

        let sets = |ha2: &str, hoa2: &str| {
            format!(
                "IPsecPolicySet {{\n HomeAgentAddress 2001:db8::ffff;\n HomeAddress 2001:db8::1/64;\n HomeAddress 2001:db8::2/64;\n IPsecPolicy Mh UseESP 1;\n}}\n\
                 IPsecPolicySet {{\n HomeAgentAddress {ha2};\n HomeAddress {hoa2};\n IPsecPolicy TunnelPayload UseESP 2;\n}}\n"
            )
        };
        let d = one_err(&sets("2001:db8::ffff", "2001:db8::2/64"));
        assert_eq!(d.line, 7);
        assert!(
            d.message.contains("overlaps the one at mip6d.conf:1:1"),
            "{d}"
        );
        assert!(d.message.contains("HomeAddress 2001:db8::2"), "{d}");
        assert_eq!(
            ok(&sets("2001:db8::ffff", "2001:db8::3/64"))
                .ipsec_policy_sets
                .len(),
            2
        );
        assert_eq!(
            ok(&sets("2001:db8::fffe", "2001:db8::2/64"))
                .ipsec_policy_sets
                .len(),
            2
        );

        let d =
            one_err("CnBindingPolicySet {\n 2001:db8::1 enabled;\n 2001:db8::1 ::2 disabled;\n}");
        assert!(
            d.message.contains("duplicate CnBindingPolicySet entry"),
            "{d}"
        );
    }

    #[test]
    fn role_checks() {
        let d =
            one_err("NodeConfig HA;\nMnHomeLink \"eth0\" {\n  HomeAddress 2001:db8::1/64;\n}\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:2:1: MnHomeLink is a mobile-node directive, but NodeConfig is HA (at mip6d.conf:1:1)"
        );
        let d = one_err("NodeConfig MN;\nInterface \"eth0\";\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:1: NodeConfig MN needs at least one MnHomeLink block"
        );
        let d = one_err("NodeConfig HA;\nInterface \"tun0\" { Tunnel enabled; }\n");
        assert_eq!(d.line, 2);
        assert!(d.message.contains("Tunnel"), "{d}");
        ok("NodeConfig HA;\nInterface \"tun0\" { IfType CN; Tunnel enabled; }\n");
        // A broken MnHomeLink is reported once, not again as "MN without MnHomeLink".
        let d = one_err(
            "NodeConfig MN;\nMnHomeLink \"eth0\" {\n  HomeAgentAddress 2001:db8::x;\n  HomeAddress 2001:db8::1/64;\n}\n",
        );
        assert_eq!(d.line, 3);
        let d =
            one_err("NodeConfig MN;\nMnHomeLink \"eth0\" {\n  HomeAgentAddress 2001:db8::1;\n}\n");
        assert!(d.message.contains("has no HomeAddress"), "{d}");
        let d = one_err(
            "NodeConfig MN;\nMnHomeLink \"eth0\" {\n  HomeAddress 2001:db8::1/64;\n  HomeAddress 2001:db8::2/64;\n}\n",
        );
        assert_eq!(
            d.help.as_deref(),
            Some("define one MnHomeLink block per home address")
        );
        let d = one_err(
            "NodeConfig MN;\nMnHomeLink \"eth0\" {\n  HomeAddress 2001:db8::1/64;\n  HaServedPrefix 2001:db8::/48;\n}\n",
        );
        assert!(d.message.contains("not valid inside MnHomeLink"), "{d}");
        let d = one_err(
            "NodeConfig MN;\nMnHomeLink \"eth0\" {\n  HomeAddress 2001:db8::1/64;\n  MnRtrAdvInterval 3;\n}\n",
        );
        assert!(
            d.message
                .contains("unknown MnHomeLink option \"MnRtrAdvInterval\""),
            "{d}"
        );
    }

    #[test]
    fn block_structure_errors() {
        let d = one_err("IPsecPolicySet {\n  HomeAgentAddress 2001:db8::ffff;\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:1:16: unterminated IPsecPolicySet block: this '{' is never closed by '}'"
        );
        let e = err("Interface \"eth0\" {\n  MnIfPreference 1;\nNodeConfig HA;\nDebugLevel 11;\n");
        let shown: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "mip6d.conf:2:20: missing '}' before \"NodeConfig\": the Interface block opened at mip6d.conf:1:18 is not closed",
                "mip6d.conf:4:12: DebugLevel value 11 out of range (0..=10)",
            ]
        );
        let d = one_err("NodeConfig HA;\n}\n");
        assert_eq!(
            d.to_string(),
            "mip6d.conf:2:1: unmatched '}' (no block is open here)"
        );
        let d = one_err("Interface \"eth0\" {\n  include \"x.conf\";\n}\n");
        assert_eq!(
            d.help.as_deref(),
            Some("include is only allowed at the top level")
        );
        let d = one_err("Interface \"eth0\" { ( }");
        assert!(
            d.message.contains("expected a Interface option or '}'"),
            "{d}"
        );
    }

    #[test]
    fn recovery_reports_every_error() {
        let e = err(
            "Foo;\nDebugLevel 11;\nNodeConfig XX;\nInterface \"eth0\";\nBar 1 2 3;\nnodeconfig HA;\n",
        );
        let lines: Vec<u32> = e.errors.iter().map(|d| d.line).collect();
        assert_eq!(lines, [1, 2, 3, 5, 6]);
        let text = e.to_string();
        let error_lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("    help:"))
            .collect();
        assert_eq!(error_lines.len(), 5, "{text}");
        assert!(
            error_lines.iter().all(|l| l.starts_with("mip6d.conf:")),
            "{text}"
        );
        assert!(text.contains("\n    help: "), "{text}");
    }

    #[test]
    fn error_flood_is_capped() {
        let text = "Foo;\n".repeat(500);
        let e = err(&text);
        assert_eq!(e.errors.len(), MAX_ERRORS + 1);
        assert!(e.errors.last().unwrap().message.contains("too many errors"));
    }

    // --- files and includes ---

    #[test]
    fn include_glob_is_relative_and_sorted() {
        let t = TempDir::new("glob");
        let main = t.write(
            "main.conf",
            "NodeConfig HA;\ninclude \"conf.d/*.conf\"\nDebugLevel 1;\n",
        );
        t.write("conf.d/20-b.conf", "Interface \"eth1\";\n");
        t.write("conf.d/10-a.conf", "Interface \"eth0\";\n");
        t.write("conf.d/.hidden.conf", "Foo;\n");
        t.write("conf.d/readme.txt", "Foo;\n");
        fs::create_dir_all(t.0.join("conf.d/dir.conf")).unwrap();
        let cfg = parse_file(&main).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = cfg.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(cfg.interfaces[0].loc.file, t.0.join("conf.d/10-a.conf"));
        assert_eq!(cfg.debug_level, 1);

        // parse_str resolves relative to the origin's directory too (the origin need not exist).
        let cfg = parse_str("include \"conf.d/1?-a.conf\";", &t.0.join("virtual.conf")).unwrap();
        assert_eq!(cfg.interfaces.len(), 1);
    }

    /// `parse_file(main)` in a thread, so a read that blocks fails the test instead of hanging it.
    fn parse_within_5s(main: &Path) -> ConfigError {
        let main = main.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(parse_file(&main).map(|_| ()));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(r) => r.expect_err("the include must be refused"),
            Err(_) => panic!("parsing did not finish within 5 s (a blocking read)"),
        }
    }

    #[test]
    fn includes_of_anything_but_a_bounded_regular_file_are_refused() {
        use std::io::Write as _;
        let t = TempDir::new("bounded");
        let fifo = t.0.join("fifo.conf");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        fs::create_dir_all(t.0.join("dir.conf")).unwrap();
        let big = t.write("big.conf", &"#".repeat(1 << 20));
        fs::OpenOptions::new()
            .append(true)
            .open(&big)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        for (target, why) in [
            (
                "/dev/zero".to_string(),
                "it is a character device, not a regular file",
            ),
            (
                fifo.display().to_string(),
                "it is a FIFO, not a regular file",
            ),
            (
                "dir.conf".to_string(),
                "it is a directory, not a regular file",
            ),
            (
                "big.conf".to_string(),
                "it is larger than 1048576 bytes (1 MiB)",
            ),
        ] {
            let main = t.write(
                "main.conf",
                &format!("NodeConfig HA;\n  include \"{target}\";\n"),
            );
            let e = parse_within_5s(&main).to_string();
            let shown = if target.starts_with('/') {
                target.clone()
            } else {
                t.0.join(&target).display().to_string()
            };
            let want = format!(
                "{}:2:11: include {target:?}: cannot read {shown}: {why}",
                main.display()
            );
            assert!(e.starts_with(&want), "{e}\nwanted: {want}");
        }
        // Exactly 1 MiB is still read.
        let ok = t.write("ok.conf", &"#".repeat(1 << 20));
        let main = t.write("main.conf", "NodeConfig HA;\ninclude \"ok.conf\";\n");
        assert_eq!(read_config(&ok).map(|s| s.len()).ok(), Some(1 << 20));
        parse_file(&main).unwrap_or_else(|e| panic!("{e}"));
        // The top file too.
        let e = parse_within_5s(Path::new("/dev/zero")).to_string();
        assert!(
            e.starts_with("/dev/zero: cannot read configuration file: it is a character device"),
            "{e}"
        );
        let e = parse_within_5s(&fifo).to_string();
        assert!(e.contains("it is a FIFO, not a regular file"), "{e}");
    }

    #[test]
    fn include_errors_point_into_the_included_file() {
        let t = TempDir::new("located");
        let main = t.write("main.conf", "include \"sub.conf\"\n");
        let sub = t.write("sub.conf", "\n\nDebugLevel 99;\n");
        let e = parse_file(&main).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3:12: DebugLevel value 99 out of range (0..=10)",
                sub.display()
            )
        );
    }

    #[test]
    fn include_depth_is_limited_to_five_levels() {
        let t = TempDir::new("depth");
        for i in 0..5 {
            t.write(
                &format!("l{i}.conf"),
                &format!("include \"l{}.conf\";\n", i + 1),
            );
        }
        t.write("l5.conf", "DebugLevel 5;\n");
        let cfg = parse_file(&t.0.join("l0.conf")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.debug_level, 5);

        t.write("l5.conf", "DebugLevel 5;\ninclude \"l6.conf\";\n");
        t.write("l6.conf", "DebugLevel 6;\n");
        let e = parse_file(&t.0.join("l0.conf")).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        let d = &e.errors[0];
        assert_eq!(d.file, t.0.join("l5.conf"));
        assert_eq!((d.line, d.column), (2, 9));
        assert!(
            d.message.contains("more than 5 nested include levels"),
            "{d}"
        );
    }

    #[test]
    fn include_cycles_are_errors() {
        let t = TempDir::new("cycle");
        t.write("a.conf", "NodeConfig HA;\ninclude \"b.conf\"\n");
        t.write("b.conf", "include \"a.conf\"\n");
        let e = parse_file(&t.0.join("a.conf")).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        let d = &e.errors[0];
        assert_eq!(d.file, t.0.join("b.conf"));
        assert_eq!((d.line, d.column), (1, 9));
        assert!(d.message.starts_with("include cycle: "), "{d}");
        assert!(d.message.contains("a.conf -> "), "{d}");

        t.write("self.conf", "include \"*.conf\"\n");
        let e = parse_file(&t.0.join("self.conf")).unwrap_err();
        assert!(
            e.errors.iter().any(|d| d.message.contains("include cycle")),
            "{e}"
        );
    }

    #[test]
    fn include_misc() {
        let t = TempDir::new("misc");
        let cfg = parse_str("include \"*.nothing\"", &t.0.join("m.conf")).unwrap();
        assert!(
            warned(&cfg.warnings, 1, 9, "matches no file"),
            "{:#?}",
            cfg.warnings
        );

        let e = parse_str("include \"missing.conf\";", &t.0.join("m.conf")).unwrap_err();
        assert!(e.errors[0].message.contains("cannot read"), "{e}");

        let e = parse_str("include \"*/x.conf\";", &t.0.join("m.conf")).unwrap_err();
        assert!(e.errors[0].message.contains("last path component"), "{e}");
        let e = parse_str("include \"[ab].conf\";", &t.0.join("m.conf")).unwrap_err();
        assert!(e.errors[0].message.contains("character classes"), "{e}");
        let e = parse_str("include \"\";", &t.0.join("m.conf")).unwrap_err();
        assert!(e.errors[0].message.contains("needs a file name"), "{e}");

        let bad = t.0.join("latin1.conf");
        fs::write(&bad, b"NodeConfig HA;\nDebugLevel \xff;\n").unwrap();
        let e = parse_file(&bad).unwrap_err();
        assert_eq!(
            e.to_string().lines().next().unwrap(),
            format!("{}:2:12: file is not valid UTF-8", bad.display())
        );

        let missing = t.0.join("does-not-exist.conf");
        let e = parse_file(&missing).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "{}: cannot read configuration file: ",
                missing.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(wildcard_match("*.conf", ".conf"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(wildcard_match("?-x", "1-x"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("?", ""));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(!wildcard_match("a*b", "acb-"));
    }

    // --- robustness ---

    use crate::config::mutate::{XorShift, mutate};

    #[test]
    fn no_input_panics() {
        let seeds = [
            SEED_HA.to_string(),
            SEED_HA.replace("coo1", "c001"),
            SEED_MN.to_string(),
            FULL_HA.to_string(),
        ];
        let alphabet: Vec<char> =
            "{}();,/=#\"\u{201E}\u{201C}\u{201D} \n\t\r\u{a0}azAZ09:.-_*?\u{0}\u{7}"
                .chars()
                .collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        // A directory that does not exist, so that a mutated `include` cannot read anything.
        let origin = std::env::temp_dir()
            .join(format!("umip-fuzz-{}-absent", std::process::id()))
            .join("mip6d.conf");
        for i in 0..5000 {
            let text = mutate(&seeds[i % seeds.len()], &alphabet, &mut rng);
            match parse_str(&text, &origin) {
                Ok(cfg) => {
                    for w in &cfg.warnings {
                        assert!(w.line >= 1 && w.column >= 1, "{w:?}");
                    }
                }
                Err(e) => {
                    assert!(!e.errors.is_empty());
                    for d in &e.errors {
                        assert!(d.line >= 1 && d.column >= 1, "{d:?} for {text:?}");
                        assert!(d.to_string().starts_with(&origin.display().to_string()));
                    }
                    let _ = e.to_string();
                }
            }
        }
    }
}
