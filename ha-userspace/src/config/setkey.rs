//! Reader for ipsec-tools' `setkey` files: manually keyed SAs for Mobile IPv6.
//!
//! Operators who move from UMIP bring the `setkey.conf` that installs their MN–HA security
//! associations (RFC 3776). This module reads the subset of setkey's language that a home agent
//! needs into typed values: `add` statements become [`ManualSa`]s, `spdadd` statements are
//! checked and kept as [`SpdEntry`]s, and `flush;`/`spdflush;` are recorded. It only reads:
//! nothing here touches the kernel.
//!
//! Principles:
//! * Nothing is silently ignored. Every [`Diagnostic`] gives `file:line:column`, and the parser
//!   recovers at the next `;` (or at the next statement, when a `;` is missing), so one run
//!   reports all problems.
//! * Key material never appears in a message or in `Debug` output: keys live in [`Key`], which
//!   prints only its length and zeroes its buffer when dropped, and every token echoed in a
//!   message that could be a key (a quoted string, a long hex string) is replaced by a
//!   description. The parser's own copies of the tokens are zeroed too.
//! * What circulates in tutorials (the German UMIP talk our seed comes from) is accepted with a
//!   warning: options whose leading `-` was lost (`u 10 m transport E … A …`), algorithm names
//!   without setkey's hyphens (`3dsecbc`, `hmacsha1`) and no-break spaces copied out of slides.
//!   The talk's key placeholder `0x<your shared secret here>` is an error that says so.
//! * `flush;` and `spdflush;` are **not** executed: hagent never flushes the kernel's whole
//!   SAD/SPD, it only ever removes what it installed. A warning says so.
//! * `spdadd` is parsed and checked but ignored (with a warning): hagent derives its policies
//!   from `mip6d.conf` and installs them itself.
//!
//! The validation rules (algorithm names, key lengths, SPI and reqid ranges, which algorithms go
//! together) are shared with other syntaxes through [`ManualSa::from_parts`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, compiler_fence};

use super::diagnostic::{closest, homoglyph_help};

/// The lowest SPI an SA may use: 1 to 255 are reserved by IANA and 0 means "no SA"
/// (RFC 4303, section 2.1).
pub const MIN_SPI: u32 = 256;
/// The highest reqid setkey lets an operator choose (`-u`, `unique:N`): `IPSEC_MANUAL_REQID_MAX`.
pub const MAX_REQID: u32 = 0x3fff;
/// After this many errors the parser stops.
const MAX_ERRORS: usize = 50;
/// Longest token echoed in a message, in characters.
const MAX_SHOWN: usize = 60;

// ---------------------------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------------------------

// The same diagnostics as mip6d.conf, so both files report errors alike.
pub use super::umip::{ConfigError, Diagnostic, Location};

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// Secret key material. `Debug` and `Display` print only the length (`Key(<24 bytes>)`), the
/// buffer is overwritten with zeros when the key is dropped, and `==` takes the same time
/// wherever the keys differ.
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` (for example a quoted setkey key, or a key read from another file).
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self(v)
    }

    /// Parses `0x` followed by an even number of hex digits (setkey's hex key syntax). The
    /// error never contains the key.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let Some(digits) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) else {
            return Err("a hex key must start with 0x".to_string());
        };
        decode_hex(digits).map_err(|e| e.message())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        Self::from_slice(&self.0)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<{} bytes>)", self.0.len())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        wipe_vec(&mut self.0);
    }
}

/// Zeroes the whole allocation of `v` (its spare capacity too), then empties it.
pub(crate) fn wipe_vec(v: &mut Vec<u8>) {
    let cap = v.capacity();
    let p = v.as_mut_ptr();
    for i in 0..cap {
        // SAFETY: `p` points to the vector's allocation of `cap` bytes; writing a `u8` anywhere
        // inside it is allowed, initialised or not. When `cap == 0` the loop does not run.
        unsafe { std::ptr::write_volatile(p.add(i), 0) };
    }
    compiler_fence(Ordering::SeqCst);
    v.clear();
}

/// Zeroes and empties a string that may hold key material.
pub(crate) fn wipe_string(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    wipe_vec(&mut bytes);
}

enum HexError {
    /// The number of digits.
    Odd(usize),
    /// The 0-based index (in characters) of the first character that is not a hex digit.
    BadDigit(usize),
}

impl HexError {
    fn message(&self) -> String {
        match self {
            Self::Odd(n) => format!(
                "the hex key has an odd number of digits ({n}): every byte takes two hex digits"
            ),
            Self::BadDigit(i) => format!(
                "the hex key is not valid: character {} after 0x is not a hex digit",
                i + 1
            ),
        }
    }
}

fn decode_hex(digits: &str) -> Result<Key, HexError> {
    if let Some(i) = digits.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(HexError::BadDigit(i));
    }
    // All ASCII from here on.
    let b = digits.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(HexError::Odd(b.len()));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    };
    let mut v = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        v.push((nibble(pair[0]) << 4) | nibble(pair[1]));
    }
    Ok(Key(v))
}

// ---------------------------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AlgKind {
    /// `-E`, encryption only.
    Cipher,
    /// `-E`, encryption and integrity (no `-A`).
    Aead,
    /// `-A`.
    Integrity,
}

/// Which option an algorithm was given with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Encryption,
    Authentication,
}

impl Role {
    const fn option(self) -> &'static str {
        match self {
            Self::Encryption => "-E",
            Self::Authentication => "-A",
        }
    }

    const fn noun(self) -> &'static str {
        match self {
            Self::Encryption => "encryption",
            Self::Authentication => "authentication",
        }
    }
}

struct AlgSpec {
    /// setkey's spelling.
    name: &'static str,
    /// Other accepted spellings, without a warning.
    aliases: &'static [&'static str],
    /// Misspellings seen in the wild, accepted with a warning (beyond case and hyphens).
    loose: &'static [&'static str],
    /// The Linux crypto API name, as XFRM wants it.
    xfrm: &'static str,
    kind: AlgKind,
    /// Allowed key lengths in bytes, smallest first.
    key_bytes: &'static [usize],
    /// The trailing part of the key that is a salt or nonce (RFC 4106, RFC 3686), in bytes.
    salt: usize,
    icv_bits: Option<u32>,
    trunc_bits: Option<u32>,
    /// Why it should not be used any more.
    deprecated: Option<&'static str>,
}

const ALGORITHMS: &[AlgSpec] = &[
    AlgSpec {
        name: "aes-gcm-16",
        aliases: &["rfc4106(gcm(aes))"],
        loose: &[],
        xfrm: "rfc4106(gcm(aes))",
        kind: AlgKind::Aead,
        key_bytes: &[20, 28, 36],
        salt: 4,
        icv_bits: Some(128),
        trunc_bits: None,
        deprecated: None,
    },
    AlgSpec {
        name: "aes-cbc",
        aliases: &["rijndael-cbc"],
        loose: &[],
        xfrm: "cbc(aes)",
        kind: AlgKind::Cipher,
        key_bytes: &[16, 24, 32],
        salt: 0,
        icv_bits: None,
        trunc_bits: None,
        deprecated: None,
    },
    AlgSpec {
        name: "aes-ctr",
        aliases: &[],
        loose: &[],
        xfrm: "rfc3686(ctr(aes))",
        kind: AlgKind::Cipher,
        key_bytes: &[20, 28, 36],
        salt: 4,
        icv_bits: None,
        trunc_bits: None,
        deprecated: None,
    },
    AlgSpec {
        name: "3des-cbc",
        aliases: &[],
        // The talk's spelling.
        loose: &["3dsecbc"],
        xfrm: "cbc(des3_ede)",
        kind: AlgKind::Cipher,
        key_bytes: &[24],
        salt: 0,
        icv_bits: None,
        trunc_bits: None,
        deprecated: Some("3DES has a 64-bit block and RFC 8221 says it SHOULD NOT be used"),
    },
    AlgSpec {
        name: "des-cbc",
        aliases: &[],
        loose: &[],
        xfrm: "cbc(des)",
        kind: AlgKind::Cipher,
        key_bytes: &[8],
        salt: 0,
        icv_bits: None,
        trunc_bits: None,
        deprecated: Some(
            "its 56-bit key can be brute-forced and RFC 8221 says it MUST NOT be used",
        ),
    },
    AlgSpec {
        name: "null",
        aliases: &[],
        loose: &[],
        xfrm: "ecb(cipher_null)",
        kind: AlgKind::Cipher,
        key_bytes: &[0],
        salt: 0,
        icv_bits: None,
        trunc_bits: None,
        deprecated: None,
    },
    AlgSpec {
        name: "hmac-sha256",
        aliases: &[],
        loose: &[],
        xfrm: "hmac(sha256)",
        kind: AlgKind::Integrity,
        key_bytes: &[32],
        salt: 0,
        icv_bits: None,
        trunc_bits: Some(128),
        deprecated: None,
    },
    AlgSpec {
        name: "hmac-sha384",
        aliases: &[],
        loose: &[],
        xfrm: "hmac(sha384)",
        kind: AlgKind::Integrity,
        key_bytes: &[48],
        salt: 0,
        icv_bits: None,
        trunc_bits: Some(192),
        deprecated: None,
    },
    AlgSpec {
        name: "hmac-sha512",
        aliases: &[],
        loose: &[],
        xfrm: "hmac(sha512)",
        kind: AlgKind::Integrity,
        key_bytes: &[64],
        salt: 0,
        icv_bits: None,
        trunc_bits: Some(256),
        deprecated: None,
    },
    AlgSpec {
        name: "aes-xcbc-mac",
        aliases: &[],
        loose: &[],
        xfrm: "xcbc(aes)",
        kind: AlgKind::Integrity,
        key_bytes: &[16],
        salt: 0,
        icv_bits: None,
        trunc_bits: Some(96),
        deprecated: None,
    },
    AlgSpec {
        name: "hmac-sha1",
        aliases: &[],
        loose: &[],
        xfrm: "hmac(sha1)",
        kind: AlgKind::Integrity,
        key_bytes: &[20],
        salt: 0,
        icv_bits: None,
        trunc_bits: Some(96),
        deprecated: Some("RFC 8221 demotes HMAC-SHA1-96 to MUST- (on its way out)"),
    },
    AlgSpec {
        name: "hmac-md5",
        aliases: &[],
        loose: &[],
        xfrm: "hmac(md5)",
        kind: AlgKind::Integrity,
        key_bytes: &[16],
        salt: 0,
        icv_bits: None,
        trunc_bits: Some(96),
        deprecated: Some("MD5 is broken and RFC 8221 says HMAC-MD5-96 MUST NOT be used"),
    },
];

const RECOMMENDATION: &str = "use aes-gcm-16, or aes-cbc with hmac-sha256";

impl AlgSpec {
    fn fits(&self, role: Role) -> bool {
        match role {
            Role::Encryption => matches!(self.kind, AlgKind::Cipher | AlgKind::Aead),
            Role::Authentication => self.kind == AlgKind::Integrity,
        }
    }

    fn is_null(&self) -> bool {
        self.key_bytes == [0]
    }

    fn deprecation(&self) -> Option<String> {
        self.deprecated
            .map(|why| format!("{} is deprecated: {why}; {RECOMMENDATION}", self.name))
    }

    /// "a 24-byte key (0x and 48 hex digits)" or "a key of 20, 28 or 36 bytes (…)".
    fn key_requirement(&self) -> String {
        let list = |v: &[usize]| {
            let parts: Vec<String> = v.iter().map(ToString::to_string).collect();
            match parts.as_slice() {
                [] => String::new(),
                [one] => one.clone(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            }
        };
        match self.key_bytes {
            [n] => format!("a {n}-byte key (0x and {} hex digits)", n * 2),
            sizes => {
                let what = if self.salt > 0 {
                    let aes: Vec<usize> = sizes.iter().map(|n| n - self.salt).collect();
                    format!(
                        ": a {}-byte AES key followed by a {}-byte salt",
                        list(&aes),
                        self.salt
                    )
                } else {
                    String::new()
                };
                format!("a key of {} bytes{what}", list(sizes))
            }
        }
    }

    fn check_key_len(&self, len: usize) -> Result<(), String> {
        if self.key_bytes.contains(&len) {
            Ok(())
        } else if self.is_null() {
            Err(format!(
                "{} takes no key, but this key has {len} bytes",
                self.name
            ))
        } else {
            Err(format!(
                "{} needs {}, but this key has {len} byte{}",
                self.name,
                self.key_requirement(),
                if len == 1 { "" } else { "s" }
            ))
        }
    }

    /// A hint for a missing or placeholder key.
    fn key_hint(&self) -> String {
        let n = self.key_bytes.last().copied().unwrap_or(0);
        format!(
            "{} takes {}; generate one with `od -An -tx1 -N{n} /dev/urandom | tr -d ' \\n'`, \
             write it as 0x followed by the {} hex digits, and give both ends the same key",
            self.name,
            self.key_requirement(),
            n * 2
        )
    }
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Finds an algorithm by setkey name or alias; `Loose(spec)` when only the spelling differs
/// (case, hyphens), as in the talk's `3dsecbc`.
enum Found {
    Exact(&'static AlgSpec),
    Loose(&'static AlgSpec),
}

fn find_algorithm(name: &str) -> Option<Found> {
    if let Some(s) = ALGORITHMS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
    {
        return Some(Found::Exact(s));
    }
    if name.chars().count() > 40 {
        return None;
    }
    let sq = squash(name);
    ALGORITHMS
        .iter()
        .find(|s| squash(s.name) == sq || s.aliases.iter().chain(s.loose).any(|a| squash(a) == sq))
        .map(Found::Loose)
}

/// setkey's canonical spelling of an algorithm name this module accepts, for callers that want
/// to warn about other spellings.
pub fn canonical_algorithm_name(name: &str) -> Option<&'static str> {
    find_algorithm(name).map(|f| match f {
        Found::Exact(s) | Found::Loose(s) => s.name,
    })
}

fn names_for(role: Role) -> String {
    ALGORITHMS
        .iter()
        .filter(|s| s.fits(role))
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What went wrong with an algorithm name: a message and a hint.
struct AlgError {
    message: String,
    help: String,
}

impl AlgError {
    fn joined(self) -> String {
        format!("{} ({})", self.message, self.help)
    }
}

/// Looks up `name` for `-E` or `-A`. On success, also a warning when the spelling is not
/// setkey's.
fn lookup(role: Role, name: &str) -> Result<(&'static AlgSpec, Option<String>), AlgError> {
    let shown = shown(name);
    let (spec, spelling) = match find_algorithm(name) {
        Some(Found::Exact(s)) => (s, None),
        Some(Found::Loose(s)) => (
            s,
            Some(format!(
                "{shown} is read as \"{}\"; setkey itself only accepts \"{}\"",
                s.name, s.name
            )),
        ),
        None => {
            let known: Vec<&str> = ALGORITHMS.iter().map(|s| s.name).collect();
            let help = match (looks_secret(name), closest(name, &known)) {
                (false, Some(k)) => format!("did you mean \"{k}\"?"),
                _ => format!("supported with {}: {}", role.option(), names_for(role)),
            };
            return Err(AlgError {
                message: format!("unknown {} algorithm {shown}", role.noun()),
                help,
            });
        }
    };
    if !spec.fits(role) {
        let message = match (role, spec.kind) {
            (Role::Authentication, AlgKind::Aead) => format!(
                "{} is an AEAD algorithm: give it with -E, where it both encrypts and \
                 authenticates",
                spec.name
            ),
            (Role::Authentication, _) => format!(
                "{} is an encryption algorithm: give it with -E, not -A",
                spec.name
            ),
            (Role::Encryption, _) => format!(
                "{} is an authentication algorithm: give it with -A, not -E",
                spec.name
            ),
        };
        return Err(AlgError {
            message,
            help: format!("supported with {}: {}", role.option(), names_for(role)),
        });
    }
    Ok((spec, spelling))
}

/// One algorithm of an SA, with its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Algorithm {
    /// setkey's spelling (`3des-cbc`), whatever spelling the file used.
    pub name_setkey: String,
    /// The Linux crypto API name for XFRM (`cbc(des3_ede)`).
    pub xfrm_name: &'static str,
    pub key: Key,
    /// `Some` exactly for AEAD algorithms (XFRMA_ALG_AEAD): the ICV length in bits.
    pub icv_bits: Option<u32>,
    /// For authentication algorithms (XFRMA_ALG_AUTH_TRUNC): the truncation length in bits.
    pub trunc_bits: Option<u32>,
}

impl Algorithm {
    /// Validates an encryption (`-E`) algorithm name and its key length.
    pub fn encryption(name: &str, key: Key) -> Result<Self, String> {
        Self::build(Role::Encryption, name, key)
    }

    /// Validates an authentication (`-A`) algorithm name and its key length.
    pub fn authentication(name: &str, key: Key) -> Result<Self, String> {
        Self::build(Role::Authentication, name, key)
    }

    fn build(role: Role, name: &str, key: Key) -> Result<Self, String> {
        let (spec, _) = lookup(role, name).map_err(AlgError::joined)?;
        spec.check_key_len(key.len())?;
        Ok(Self::from_spec(spec, key))
    }

    fn from_spec(spec: &'static AlgSpec, key: Key) -> Self {
        Self {
            name_setkey: spec.name.to_string(),
            xfrm_name: spec.xfrm,
            key,
            icv_bits: spec.icv_bits,
            trunc_bits: spec.trunc_bits,
        }
    }

    fn spec(&self) -> Option<&'static AlgSpec> {
        ALGORITHMS.iter().find(|s| s.name == self.name_setkey)
    }

    pub fn is_aead(&self) -> bool {
        self.icv_bits.is_some()
    }

    /// Why this algorithm should be replaced, if it should.
    pub fn deprecation(&self) -> Option<String> {
        self.spec().and_then(AlgSpec::deprecation)
    }
}

// ---------------------------------------------------------------------------------------------
// SAs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpsecProto {
    Esp,
    Ah,
}

impl IpsecProto {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Esp => "esp",
            Self::Ah => "ah",
        }
    }
}

impl fmt::Display for IpsecProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `-m`. setkey's default is `any`; it is kept as written and the caller decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SaMode {
    Transport,
    Tunnel,
    #[default]
    Any,
}

impl SaMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transport => "transport",
            Self::Tunnel => "tunnel",
            Self::Any => "any",
        }
    }
}

impl fmt::Display for SaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `-lh`, `-ls` (seconds) and `-bh`, `-bs` (bytes); `None` when not given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub hard_secs: Option<u64>,
    pub soft_secs: Option<u64>,
    pub hard_bytes: Option<u64>,
    pub soft_bytes: Option<u64>,
}

/// A manually keyed SA (`add`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualSa {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub proto: IpsecProto,
    pub spi: u32,
    pub mode: SaMode,
    /// `-u`; 0 when not given.
    pub reqid: u32,
    /// `-r`, as written; 0 (setkey's default) when not given.
    pub replay_window: u32,
    /// `-E`; always `Some` for ESP, `None` for AH.
    pub encryption: Option<Algorithm>,
    /// `-A`; `None` with an AEAD cipher, always `Some` for AH.
    pub authentication: Option<Algorithm>,
    pub lifetime: Lifetime,
    /// The `add` keyword (or wherever the SA was defined).
    pub loc: Location,
}

/// Everything [`ManualSa::from_parts`] needs. Algorithm names are as written (setkey names,
/// aliases such as `rijndael-cbc`/`rfc4106(gcm(aes))`, or hyphen-less spellings).
#[derive(Debug)]
pub struct ManualSaParts<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub proto: IpsecProto,
    pub spi: u32,
    pub mode: SaMode,
    /// 0 for none, else 1..=[`MAX_REQID`].
    pub reqid: u32,
    pub replay_window: u32,
    pub encryption: Option<(&'a str, Key)>,
    pub authentication: Option<(&'a str, Key)>,
    pub lifetime: Lifetime,
    pub loc: Location,
}

impl ManualSa {
    /// Builds an SA with the rules the setkey parser applies: addresses, SPI range, reqid range,
    /// lifetimes, algorithm names, key lengths and which algorithms go together. The error
    /// never contains key material.
    pub fn from_parts(p: ManualSaParts<'_>) -> Result<Self, String> {
        check_sa_address(p.src, "source")?;
        check_sa_address(p.dst, "destination")?;
        check_spi(p.spi)?;
        check_optional_reqid(p.reqid)?;
        check_lifetime(&p.lifetime)?;
        let encryption = p
            .encryption
            .map(|(name, key)| Algorithm::encryption(name, key))
            .transpose()?;
        let authentication = p
            .authentication
            .map(|(name, key)| Algorithm::authentication(name, key))
            .transpose()?;
        let class = encryption
            .as_ref()
            .map(|a| a.spec().map_or(EncClass::Cipher, EncClass::of));
        check_combination(p.proto, class, authentication.is_some()).map_err(|(_, m)| m)?;
        Ok(Self {
            src: p.src,
            dst: p.dst,
            proto: p.proto,
            spi: p.spi,
            mode: p.mode,
            reqid: p.reqid,
            replay_window: p.replay_window,
            encryption,
            authentication,
            lifetime: p.lifetime,
            loc: p.loc,
        })
    }

    /// What the parser warns about for this SA: deprecated algorithms, and ESP without
    /// integrity protection.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = [&self.encryption, &self.authentication]
            .into_iter()
            .flatten()
            .filter_map(Algorithm::deprecation)
            .collect();
        if let Some(w) = self.unauthenticated_warning() {
            out.push(w);
        }
        out
    }

    fn unauthenticated_warning(&self) -> Option<String> {
        let enc = self.encryption.as_ref()?;
        (self.proto == IpsecProto::Esp && !enc.is_aead() && self.authentication.is_none()).then(
            || {
                format!(
                    "esp with {} and no -A: the packets are encrypted but not authenticated, \
                     which active attackers can exploit; {RECOMMENDATION}",
                    enc.name_setkey
                )
            },
        )
    }
}

/// Checks an SPI: [`MIN_SPI`] or more.
pub fn check_spi(spi: u32) -> Result<(), String> {
    if spi >= MIN_SPI {
        Ok(())
    } else {
        Err(format!(
            "SPI {spi} is reserved: SPIs 0 to 255 are reserved (RFC 4303, section 2.1); use 256 \
             (0x100) or more"
        ))
    }
}

/// Parses an SPI as setkey does (decimal or `0x` hex) and checks it with [`check_spi`].
pub fn parse_spi(text: &str) -> Result<u32, String> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (text, 10),
    };
    let valid = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    if !valid {
        return Err(format!(
            "invalid SPI {}: expected a decimal or 0x-hex number",
            shown(text)
        ));
    }
    let spi = u32::from_str_radix(digits, radix).map_err(|_| {
        format!(
            "SPI {} is too large: SPIs are 32-bit (at most 4294967295 = 0xffffffff)",
            shown(text)
        )
    })?;
    check_spi(spi)?;
    Ok(spi)
}

/// Checks a reqid that may be absent, as an SA's or a policy's (`IPsecPolicy … UseESP` in
/// mip6d.conf, `reqid` in TOML): 0 for none, else 1 to [`MAX_REQID`] — one rule for every
/// syntax, so what one accepts the others can say.
pub fn check_optional_reqid(reqid: u32) -> Result<(), String> {
    if reqid == 0 {
        Ok(())
    } else {
        check_reqid(reqid)
    }
}

/// Checks a reqid given with `-u` (or `unique:N`): 1 to [`MAX_REQID`].
pub fn check_reqid(reqid: u32) -> Result<(), String> {
    if (1..=MAX_REQID).contains(&reqid) {
        Ok(())
    } else {
        Err(format!(
            "reqid {reqid} is out of range: setkey allows 1 to {MAX_REQID} (0x3fff)"
        ))
    }
}

fn check_sa_address(a: Ipv6Addr, what: &str) -> Result<(), String> {
    if a.is_unspecified() {
        Err(format!(
            "the unspecified address :: cannot be an SA's {what}"
        ))
    } else if let Some(v4) = a.to_ipv4_mapped() {
        Err(format!(
            "{a} is an IPv4-mapped address ({v4}): hagent handles IPv6 only"
        ))
    } else {
        Ok(())
    }
}

fn check_lifetime(l: &Lifetime) -> Result<(), String> {
    if let (Some(soft), Some(hard)) = (l.soft_secs, l.hard_secs)
        && soft > hard
    {
        return Err(format!(
            "the soft lifetime (-ls {soft}) is longer than the hard lifetime (-lh {hard})"
        ));
    }
    if let (Some(soft), Some(hard)) = (l.soft_bytes, l.hard_bytes)
        && soft > hard
    {
        return Err(format!(
            "the soft byte limit (-bs {soft}) is larger than the hard byte limit (-bh {hard})"
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EncClass {
    Null,
    Cipher,
    Aead,
}

impl EncClass {
    fn of(spec: &AlgSpec) -> Self {
        if spec.kind == AlgKind::Aead {
            Self::Aead
        } else if spec.is_null() {
            Self::Null
        } else {
            Self::Cipher
        }
    }
}

/// Which part of an `add` statement a combination error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Statement,
    Encryption,
    Authentication,
}

fn check_combination(
    proto: IpsecProto,
    enc: Option<EncClass>,
    has_auth: bool,
) -> Result<(), (Part, String)> {
    match (proto, enc) {
        (IpsecProto::Esp, None) => Err((
            Part::Statement,
            "an esp SA needs an encryption algorithm (-E), for example -E aes-gcm-16 KEY"
                .to_string(),
        )),
        (IpsecProto::Esp, Some(EncClass::Aead)) if has_auth => Err((
            Part::Authentication,
            "-A cannot be combined with an AEAD algorithm: aes-gcm-16 already authenticates"
                .to_string(),
        )),
        (IpsecProto::Esp, Some(EncClass::Null)) if !has_auth => Err((
            Part::Encryption,
            "esp with -E null and no -A would neither encrypt nor authenticate".to_string(),
        )),
        (IpsecProto::Ah, Some(_)) => Err((
            Part::Encryption,
            "ah cannot encrypt: -E is not allowed with ah".to_string(),
        )),
        (IpsecProto::Ah, None) if !has_auth => Err((
            Part::Statement,
            "an ah SA needs an authentication algorithm (-A), for example -A hmac-sha256 KEY"
                .to_string(),
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// SPD entries
// ---------------------------------------------------------------------------------------------

/// `address[/prefixlen][[port]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    pub addr: Ipv6Addr,
    /// 128 when not written.
    pub prefix_len: u8,
    /// `None` for `[any]` or when not written.
    pub port: Option<u16>,
}

/// The upper-layer protocol of a policy selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpperSpec {
    Any,
    Protocol {
        number: u8,
        /// For ICMPv6 (58) and the Mobility Header (135): `type[,code]`.
        type_code: Option<(u8, Option<u8>)>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyDirection {
    In,
    Out,
    Fwd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriorityBase {
    Low,
    Default,
    High,
}

/// `prio low|def|high[+-offset]` or `prio N`, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyPriority {
    /// `None` when a bare number was written.
    pub base: Option<PriorityBase>,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpdProto {
    Esp,
    Ah,
    IpComp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestLevel {
    Default,
    Use,
    Require,
    /// `unique` or `unique:N`.
    Unique(Option<u32>),
}

/// One `protocol/mode/src-dst/level` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpsecRequest {
    pub proto: SpdProto,
    /// Transport or tunnel.
    pub mode: SaMode,
    pub endpoints: Option<(Ipv6Addr, Ipv6Addr)>,
    pub level: RequestLevel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    Discard,
    None,
    Bypass,
    Entrust,
    Ipsec(Vec<IpsecRequest>),
}

/// An `spdadd` (or `spdupdate`) statement. hagent does not install these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpdEntry {
    pub src: AddrRange,
    pub dst: AddrRange,
    pub upper: UpperSpec,
    pub direction: PolicyDirection,
    pub priority: Option<PolicyPriority>,
    pub action: PolicyAction,
    pub loc: Location,
}

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

/// A parsed setkey file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetkeyFile {
    pub sas: Vec<ManualSa>,
    /// `flush;` was present. hagent does not flush the kernel's SAD.
    pub flush: bool,
    /// `spdflush;` was present. hagent does not flush the kernel's SPD.
    pub spdflush: bool,
    /// Checked, but not installed by hagent.
    pub spd: Vec<SpdEntry>,
    pub warnings: Vec<Diagnostic>,
}

/// Parses a setkey file's text; `origin` names it in diagnostics.
pub fn parse_str(text: &str, origin: &Path) -> Result<SetkeyFile, ConfigError> {
    let (toks, lex_errors, lex_warnings) = lex(text, origin);
    let mut p = Parser {
        toks,
        pos: 0,
        file: origin.to_path_buf(),
        errors: lex_errors,
        warnings: lex_warnings,
        sas: Vec::new(),
        spd: Vec::new(),
        flush: false,
        spdflush: false,
        dashless_warned: false,
        warned: HashSet::new(),
    };
    p.run();
    p.check_duplicates();
    let mut errors = std::mem::take(&mut p.errors);
    let mut warnings = std::mem::take(&mut p.warnings);
    errors.sort_by_key(|d| (d.line, d.column));
    warnings.sort_by_key(|d| (d.line, d.column));
    if errors.is_empty() {
        Ok(SetkeyFile {
            sas: std::mem::take(&mut p.sas),
            flush: p.flush,
            spdflush: p.spdflush,
            spd: std::mem::take(&mut p.spd),
            warnings,
        })
    } else {
        Err(ConfigError { errors, warnings })
    }
}

/// Reads and parses a setkey file. Warns when the file, which holds secret keys, is readable by
/// group or others.
pub fn parse_file(path: &Path) -> Result<SetkeyFile, ConfigError> {
    let whole = |message: String, help: Option<&str>| ConfigError {
        errors: vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message,
            help: help.map(str::to_string),
        }],
        warnings: Vec::new(),
    };
    let bytes =
        super::read_bounded(path).map_err(|e| whole(format!("cannot read the file: {e}"), None))?;
    let mut text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let mut bytes = e.into_bytes();
            wipe_vec(&mut bytes);
            return Err(whole(
                "the file is not valid UTF-8".to_string(),
                Some("save it as plain ASCII"),
            ));
        }
    };
    let result = parse_str(&text, path);
    wipe_string(&mut text);
    let mode_warning = permission_warning(path);
    match result {
        Ok(mut f) => {
            f.warnings.splice(0..0, mode_warning);
            Ok(f)
        }
        Err(mut e) => {
            e.warnings.splice(0..0, mode_warning);
            Err(e)
        }
    }
}

/// The permission bits of a file that holds keys, when group or others can access it.
#[cfg(unix)]
pub(crate) fn exposed_mode(m: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = m.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<Diagnostic> {
    let mode = exposed_mode(&fs::metadata(path).ok()?)?;
    Some(Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!(
            "the file holds secret keys but its mode is {mode:04o}: group or others can access it"
        ),
        help: Some(format!("chmod 600 {}", path.display())),
    })
}

#[cfg(not(unix))]
fn permission_warning(_: &Path) -> Option<Diagnostic> {
    None
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Whether a word could be key material: a long hex string, with or without `0x`, or anything
/// long after `0x`, or something in typographic quotes.
fn looks_secret(w: &str) -> bool {
    let prefixed = w.starts_with("0x") || w.starts_with("0X");
    let body = if prefixed { &w[2..] } else { w };
    (prefixed && body.chars().count() > 8)
        || (body.len() >= 6 && body.chars().all(|c| c.is_ascii_hexdigit()))
        || w.starts_with(['\u{201E}', '\u{201C}', '\u{201D}', '\'', '`'])
}

/// A word as it may appear in a message: quoted and escaped, truncated, or, when it could be a
/// key, described instead.
fn shown(w: &str) -> String {
    if looks_secret(w) {
        format!(
            "<a {}-character string that may be a key, not shown>",
            w.chars().count()
        )
    } else if w.chars().count() > MAX_SHOWN {
        let head: String = w.chars().take(MAX_SHOWN).collect();
        format!("{head:?}…")
    } else {
        format!("{w:?}")
    }
}

/// A placeholder such as `0x<your shared secret here>`, quoted, with odd spaces made plain.
fn shown_placeholder(p: &str) -> String {
    let plain: String = p
        .chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    format!("{plain:?}")
}

/// Parses an IPv6 address, explaining a failure: message and hint.
fn ipv6(w: &str, what: &str) -> Result<Ipv6Addr, (String, Option<String>)> {
    if let Ok(a) = w.parse::<Ipv6Addr>() {
        return Ok(a);
    }
    let s = shown(w);
    if w.parse::<Ipv4Addr>().is_ok() {
        return Err((
            format!("{s} is an IPv4 address: hagent handles IPv6 only"),
            Some(format!("give the {what} as an IPv6 address")),
        ));
    }
    if let Some((addr, _)) = w.split_once('%')
        && addr.parse::<Ipv6Addr>().is_ok()
    {
        return Err((
            format!("scoped address {s}: zone indices (%…) are not supported"),
            Some(format!("give the {what} without the %zone suffix")),
        ));
    }
    let help = if looks_secret(w) {
        None
    } else {
        homoglyph_help(w)
    };
    Err((format!("invalid IPv6 address {s} as the {what}"), help))
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

/// Tokens may hold key material: no `Debug`, no `Clone`, and the parser zeroes them on drop.
enum Tok {
    /// A run of characters that are not whitespace, `;`, `"` or `#`.
    Word(String),
    /// `"…"`, without the quotes.
    Quoted(String),
    /// `<…>` or `0x<…>` on one line, as in the talk's `0x<your shared secret here>`.
    Placeholder(String),
    Semi,
    Eof,
}

struct Token {
    tok: Tok,
    line: u32,
    col: u32,
    /// The column just after the token (tokens never span lines).
    end_col: u32,
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

struct Cursor<'a> {
    s: &'a str,
    i: usize,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.i += c.len_utf8();
            if c == '\n' {
                self.line = self.line.saturating_add(1);
                self.col = 1;
            } else {
                self.col = self.col.saturating_add(1);
            }
        }
    }
}

fn lex(text: &str, file: &Path) -> (Vec<Token>, Vec<Diagnostic>, Vec<Diagnostic>) {
    let diag = |line: u32, column: u32, message: String| Diagnostic {
        file: file.to_path_buf(),
        line,
        column,
        message,
        help: None,
    };
    let mut toks = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut c = Cursor {
        s: text,
        i: 0,
        line: 1,
        col: 1,
    };
    if text.starts_with('\u{feff}') {
        c.i = '\u{feff}'.len_utf8();
    }
    let mut odd_space_warned = false;
    while let Some(ch) = c.peek() {
        let (line, col) = (c.line, c.col);
        if ch == '#' {
            while c.peek().is_some_and(|x| x != '\n') {
                c.bump();
            }
            continue;
        }
        if ch.is_whitespace() {
            if !ch.is_ascii() && !odd_space_warned {
                odd_space_warned = true;
                warnings.push(
                    diag(
                        line,
                        col,
                        format!(
                            "non-ASCII whitespace {} read as a space; setkey would reject this \
                             file",
                            space_name(ch)
                        ),
                    )
                    .with_help(
                        "this usually comes from copying a config out of slides or a PDF; \
                         replace it with plain spaces (further occurrences in this file are not \
                         reported)",
                    ),
                );
            }
            c.bump();
            continue;
        }
        if ch == ';' {
            c.bump();
            toks.push(Token {
                tok: Tok::Semi,
                line,
                col,
                end_col: c.col,
            });
            continue;
        }
        if ch == '"' {
            c.bump();
            let start = c.i;
            while c.peek().is_some_and(|x| x != '"' && x != '\n') {
                c.bump();
            }
            let content = c.s[start..c.i].to_owned();
            if c.peek() == Some('"') {
                c.bump();
            } else {
                errors.push(
                    diag(
                        line,
                        col,
                        "unterminated quoted string: no closing '\"' on this line".to_string(),
                    )
                    .with_help("quoted strings (keys) cannot span lines"),
                );
            }
            toks.push(Token {
                tok: Tok::Quoted(content),
                line,
                col,
                end_col: c.col,
            });
            continue;
        }
        // `<…>` and `0x<…>`: a placeholder, possibly with spaces, up to `>` on the same line.
        let rest = c.rest();
        let after_prefix = rest
            .strip_prefix("0x<")
            .or_else(|| rest.strip_prefix("0X<"))
            .or_else(|| rest.strip_prefix('<'));
        if let Some(inner) = after_prefix
            && let Some(close) = inner.find(['>', '\n'])
            && inner[close..].starts_with('>')
        {
            let start = c.i;
            let end = c.i + (rest.len() - inner.len()) + close + 1;
            while c.i < end {
                c.bump();
            }
            toks.push(Token {
                tok: Tok::Placeholder(c.s[start..end].to_owned()),
                line,
                col,
                end_col: c.col,
            });
            continue;
        }
        let start = c.i;
        while c
            .peek()
            .is_some_and(|x| !(x.is_whitespace() || matches!(x, ';' | '"' | '#')))
        {
            c.bump();
        }
        toks.push(Token {
            tok: Tok::Word(c.s[start..c.i].to_owned()),
            line,
            col,
            end_col: c.col,
        });
    }
    toks.push(Token {
        tok: Tok::Eof,
        line: c.line,
        col: c.col,
        end_col: c.col,
    });
    (toks, errors, warnings)
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Marks an error that has already been recorded; the caller resynchronises.
struct Fail;
type PResult<T> = Result<T, Fail>;

const COMMANDS: &[&str] = &[
    "add",
    "spdadd",
    "flush",
    "spdflush",
    "delete",
    "deleteall",
    "get",
    "dump",
    "spddelete",
    "spddump",
    "update",
    "spdupdate",
];

const SA_OPTIONS: &[&str] = &["m", "u", "r", "f", "lh", "ls", "bh", "bs", "E", "A", "C"];
const SA_OPTIONS_HELP: &str = "add takes -m MODE, -u REQID, -r WINDOW, -f PAD, -lh/-ls SECONDS, \
                               -bh/-bs BYTES, -E ALGORITHM KEY and -A ALGORITHM KEY";
const PAD_OPTIONS: &[&str] = &[
    "zero-pad",
    "random-pad",
    "seq-pad",
    "nocyclic-seq",
    "cyclic-seq",
];

fn is_command(w: &str) -> bool {
    COMMANDS.contains(&w)
}

/// An encryption or authentication option being parsed.
struct AlgSlot {
    spec: Option<&'static AlgSpec>,
    key: Option<Key>,
    /// The `-E`/`-A` token.
    at: usize,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    file: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    sas: Vec<ManualSa>,
    spd: Vec<SpdEntry>,
    flush: bool,
    spdflush: bool,
    dashless_warned: bool,
    /// Warnings given once per file, by key.
    warned: HashSet<String>,
}

impl Drop for Parser {
    fn drop(&mut self) {
        for t in &mut self.toks {
            if let Tok::Word(s) | Tok::Quoted(s) | Tok::Placeholder(s) = &mut t.tok {
                wipe_string(s);
            }
        }
    }
}

impl Parser {
    // --- tokens ---

    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    /// Consumes the current token (never past the final `Eof`) and returns its index.
    fn bump(&mut self) -> usize {
        let i = self.pos;
        if i + 1 < self.toks.len() {
            self.pos += 1;
        }
        i
    }

    fn word(&self, i: usize) -> &str {
        match &self.toks[i].tok {
            Tok::Word(w) => w,
            _ => "",
        }
    }

    fn starts_line(&self, i: usize) -> bool {
        i == 0 || self.toks[i - 1].line < self.toks[i].line
    }

    /// Whether token `i` is a command at the start of a line: the start of the next statement.
    fn is_next_statement(&self, i: usize) -> bool {
        matches!(&self.toks[i].tok, Tok::Word(w) if is_command(w)) && self.starts_line(i)
    }

    fn describe(&self, i: usize) -> String {
        match &self.toks[i].tok {
            Tok::Word(w) => shown(w),
            Tok::Quoted(_) => "a quoted string (not shown: it may be a key)".to_string(),
            Tok::Placeholder(p) => format!("the placeholder {}", shown_placeholder(p)),
            Tok::Semi => "';'".to_string(),
            Tok::Eof => "the end of the file".to_string(),
        }
    }

    fn loc(&self, i: usize) -> Location {
        Location {
            file: self.file.clone(),
            line: self.toks[i].line,
            column: self.toks[i].col,
        }
    }

    /// The position just after the token before the current one.
    fn prev_end(&self) -> (u32, u32) {
        match self.pos.checked_sub(1) {
            Some(p) => (self.toks[p].line, self.toks[p].end_col),
            None => (1, 1),
        }
    }

    // --- diagnostics ---

    fn error_at(&mut self, line: u32, column: u32, message: String, help: Option<String>) {
        self.errors.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message,
            help,
        });
    }

    fn error(&mut self, i: usize, message: String, help: Option<String>) {
        let (line, col) = (self.toks[i].line, self.toks[i].col);
        self.error_at(line, col, message, help);
    }

    fn fail(&mut self, i: usize, message: String, help: Option<String>) -> Fail {
        self.error(i, message, help);
        Fail
    }

    fn warn(&mut self, i: usize, message: String, help: Option<String>) {
        self.warnings.push(Diagnostic {
            file: self.file.clone(),
            line: self.toks[i].line,
            column: self.toks[i].col,
            message,
            help,
        });
    }

    /// A warning given at most once per file for `key`.
    fn warn_once(&mut self, key: &str, i: usize, message: String, help: Option<String>) {
        if self.warned.insert(key.to_string()) {
            self.warn(i, message, help);
        }
    }

    fn missing_semi(&mut self, stmt: usize) -> Fail {
        let (line, col) = self.prev_end();
        let (name, start) = (self.word(stmt).to_string(), self.toks[stmt].line);
        self.error_at(
            line,
            col,
            format!("missing ';' at the end of the {name} statement that starts on line {start}"),
            Some("every setkey statement ends with ';'".to_string()),
        );
        Fail
    }

    fn dashless(&mut self, i: usize, name: &str) {
        if !self.dashless_warned {
            self.dashless_warned = true;
            self.warn(
                i,
                format!(
                    "option \"{name}\" without its leading '-' is read as \"-{name}\"; setkey \
                     itself rejects this"
                ),
                Some(
                    "the dashes were probably lost when the file was copied from slides; write \
                     -u, -m, -E, -A (further options without '-' in this file are not reported)"
                        .to_string(),
                ),
            );
        }
    }

    // --- driver ---

    fn run(&mut self) {
        loop {
            if self.errors.len() >= MAX_ERRORS {
                let i = self.pos;
                self.error(i, "too many errors; stopping here".to_string(), None);
                return;
            }
            let i = self.pos;
            let r = match &self.toks[i].tok {
                Tok::Eof => return,
                Tok::Semi => {
                    self.bump();
                    continue;
                }
                Tok::Word(w) => {
                    let cmd = COMMANDS.iter().find(|c| **c == w.as_str()).copied();
                    self.bump();
                    match cmd {
                        Some("add") => self.stmt_add(i),
                        Some("spdadd" | "spdupdate") => self.stmt_spdadd(i),
                        Some("flush") => self.stmt_flush(i),
                        Some("spdflush") => self.stmt_spdflush(i),
                        Some(other) => Err(self.fail(
                            i,
                            format!("\"{other}\" is not supported in a file hagent reads"),
                            Some(
                                "hagent reads add, spdadd, flush and spdflush statements"
                                    .to_string(),
                            ),
                        )),
                        None => {
                            let help = match closest(self.word(i), COMMANDS) {
                                Some(k) if !looks_secret(self.word(i)) => {
                                    format!("did you mean \"{k}\"?")
                                }
                                _ => "hagent reads add, spdadd, flush and spdflush statements"
                                    .to_string(),
                            };
                            let d = self.describe(i);
                            Err(self.fail(i, format!("unknown command {d}"), Some(help)))
                        }
                    }
                }
                Tok::Quoted(_) | Tok::Placeholder(_) => {
                    self.bump();
                    let d = self.describe(i);
                    Err(self.fail(
                        i,
                        format!("expected a command (add, spdadd, flush, spdflush), found {d}"),
                        None,
                    ))
                }
            };
            if r.is_err() {
                self.recover(i);
            }
        }
    }

    /// Skips to just after the next `;`, or to the next statement at the start of a line.
    fn recover(&mut self, stmt: usize) {
        loop {
            let i = self.pos;
            match &self.toks[i].tok {
                Tok::Eof => return,
                Tok::Semi => {
                    self.bump();
                    return;
                }
                _ if i > stmt && self.is_next_statement(i) => return,
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn expect_semi(&mut self, stmt: usize) -> PResult<()> {
        let i = self.pos;
        match &self.toks[i].tok {
            Tok::Semi => {
                self.bump();
                Ok(())
            }
            Tok::Eof => Err(self.missing_semi(stmt)),
            _ if self.is_next_statement(i) => Err(self.missing_semi(stmt)),
            _ => {
                let d = self.describe(i);
                let name = self.word(stmt).to_string();
                Err(self.fail(i, format!("unexpected {d} in {name}: expected ';'"), None))
            }
        }
    }

    /// The next token as a word, for `what`; anything else is an error.
    fn expect_word(&mut self, what: &str) -> PResult<usize> {
        let i = self.pos;
        if matches!(self.toks[i].tok, Tok::Word(_)) && !self.is_next_statement(i) {
            return Ok(self.bump());
        }
        let d = self.describe(i);
        if matches!(self.toks[i].tok, Tok::Eof | Tok::Semi) || self.is_next_statement(i) {
            let (line, col) = self.prev_end();
            self.error_at(line, col, format!("missing {what} (found {d})"), None);
            return Err(Fail);
        }
        Err(self.fail(i, format!("expected {what}, found {d}"), None))
    }

    /// The value after option `opt` (token `at`): a word that is not itself an option.
    fn expect_value(&mut self, at: usize, what: &str) -> PResult<usize> {
        let i = self.pos;
        let is_value = match &self.toks[i].tok {
            Tok::Word(w) => {
                let option_like = w
                    .strip_prefix('-')
                    .is_some_and(|r| r.starts_with(char::is_alphabetic));
                !option_like && !self.is_next_statement(i)
            }
            _ => false,
        };
        if is_value {
            return Ok(self.bump());
        }
        let opt = self.word(at).to_string();
        let d = self.describe(i);
        Err(self.fail(i, format!("missing {what} after {opt} (found {d})"), None))
    }

    /// `-4`, `-6`, `-n` after `add`/`spdadd`. Returns false after a (recorded) error.
    fn family_flags(&mut self) -> bool {
        let mut ok = true;
        loop {
            let i = self.pos;
            match self.word(i) {
                "-6" | "-n" => {
                    self.bump();
                }
                "-4" => {
                    self.bump();
                    self.error(i, "-4: hagent handles IPv6 only".to_string(), None);
                    ok = false;
                }
                _ => return ok,
            }
        }
    }

    fn decimal<T: std::str::FromStr>(&mut self, i: usize, what: &str) -> Option<T> {
        let w = self.word(i);
        let parsed = if !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) {
            w.parse::<T>().ok()
        } else {
            None
        };
        if parsed.is_none() {
            let d = self.describe(i);
            let why = if w.chars().all(|c| c.is_ascii_digit()) {
                "the number is too large"
            } else {
                "expected a decimal number"
            };
            self.error(i, format!("invalid {what} {d}: {why}"), None);
        }
        parsed
    }

    // --- statements ---

    fn stmt_flush(&mut self, kw: usize) -> PResult<()> {
        let i = self.pos;
        if let Tok::Word(w) = &self.toks[i].tok
            && !self.is_next_statement(i)
        {
            if matches!(w.as_str(), "esp" | "ah" | "ipcomp") {
                self.bump();
            } else {
                let d = self.describe(i);
                return Err(self.fail(
                    i,
                    format!("unexpected {d} after flush: expected ';' or a protocol (esp, ah)"),
                    None,
                ));
            }
        }
        self.expect_semi(kw)?;
        self.flush = true;
        self.warn(
            kw,
            "flush is not executed: hagent never flushes the kernel's whole SAD; it only ever \
             removes the SAs it installed itself"
                .to_string(),
            None,
        );
        Ok(())
    }

    fn stmt_spdflush(&mut self, kw: usize) -> PResult<()> {
        self.expect_semi(kw)?;
        self.spdflush = true;
        self.warn(
            kw,
            "spdflush is not executed: hagent never flushes the kernel's whole SPD; it only ever \
             removes the policies it installed itself"
                .to_string(),
            None,
        );
        Ok(())
    }

    fn sa_address(&mut self, i: usize, what: &str) -> Option<Ipv6Addr> {
        let w = self.word(i);
        let r = if w.contains('/') || w.contains('[') {
            Err((
                format!(
                    "{} has a prefix length or port: an SA's {what} is a single address",
                    shown(w)
                ),
                None,
            ))
        } else {
            ipv6(w, &format!("SA's {what}"))
                .and_then(|a| check_sa_address(a, what).map(|()| a).map_err(|m| (m, None)))
        };
        match r {
            Ok(a) => Some(a),
            Err((m, h)) => {
                self.error(i, m, h);
                None
            }
        }
    }

    fn sa_proto(&mut self, i: usize) -> Option<IpsecProto> {
        match self.word(i) {
            "esp" => Some(IpsecProto::Esp),
            "ah" => Some(IpsecProto::Ah),
            w @ ("ipcomp" | "esp-old" | "ah-old" | "tcp") => {
                let m = format!("protocol \"{w}\" is not supported: hagent installs esp or ah SAs");
                self.error(i, m, None);
                None
            }
            w => {
                let help = match closest(w, &["esp", "ah"]) {
                    Some(k) if !looks_secret(w) => format!("did you mean \"{k}\"?"),
                    _ => "the protocol follows the two addresses: esp or ah".to_string(),
                };
                let d = self.describe(i);
                self.error(i, format!("unknown protocol {d}"), Some(help));
                None
            }
        }
    }

    fn stmt_add(&mut self, kw: usize) -> PResult<()> {
        let mut ok = self.family_flags();
        let src_i = self.expect_word("the source address")?;
        let src = self.sa_address(src_i, "source");
        let dst_i = self.expect_word("the destination address")?;
        let dst = self.sa_address(dst_i, "destination");
        let proto_i = self.expect_word("the protocol (esp or ah)")?;
        let proto = self.sa_proto(proto_i);
        let spi_i = self.expect_word("the SPI")?;
        let spi = match parse_spi(self.word(spi_i)) {
            Ok(s) => Some(s),
            Err(m) => {
                self.error(spi_i, m, None);
                None
            }
        };

        let mut mode = SaMode::Any;
        let mut reqid = 0;
        let mut replay_window = 0;
        let mut lifetime = Lifetime::default();
        let mut enc: Option<AlgSlot> = None;
        let mut auth: Option<AlgSlot> = None;
        let mut seen: Vec<(&'static str, usize)> = Vec::new();
        loop {
            let i = self.pos;
            let (name, dashed) = match &self.toks[i].tok {
                Tok::Semi => {
                    self.bump();
                    break;
                }
                Tok::Eof => return Err(self.missing_semi(kw)),
                Tok::Word(_) if self.is_next_statement(i) => return Err(self.missing_semi(kw)),
                Tok::Word(w) => {
                    let (bare, dashed) = match w.strip_prefix('-') {
                        Some(b) => (b, true),
                        None => (w.as_str(), false),
                    };
                    match SA_OPTIONS.iter().find(|o| **o == bare) {
                        Some(o) => (*o, dashed),
                        None if dashed => {
                            let help =
                                match SA_OPTIONS.iter().find(|o| o.eq_ignore_ascii_case(bare)) {
                                    Some(o) => format!("did you mean -{o}? ({SA_OPTIONS_HELP})"),
                                    None => SA_OPTIONS_HELP.to_string(),
                                };
                            let d = self.describe(i);
                            return Err(self.fail(i, format!("unknown option {d}"), Some(help)));
                        }
                        None => {
                            let d = self.describe(i);
                            return Err(self.fail(
                                i,
                                format!("unexpected {d} in add: expected an option or ';'"),
                                Some(SA_OPTIONS_HELP.to_string()),
                            ));
                        }
                    }
                }
                Tok::Quoted(_) | Tok::Placeholder(_) => {
                    let d = self.describe(i);
                    return Err(self.fail(
                        i,
                        format!("unexpected {d} in add: expected an option or ';'"),
                        Some(SA_OPTIONS_HELP.to_string()),
                    ));
                }
            };
            self.bump();
            if !dashed {
                self.dashless(i, name);
            }
            if let Some(&(_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let l = self.loc(first);
                self.error(i, format!("-{name} is given twice (first at {l})"), None);
                ok = false;
            } else {
                seen.push((name, i));
            }
            match name {
                "m" => {
                    let v = self.expect_value(i, "the mode (transport, tunnel or any)")?;
                    match self.word(v) {
                        "transport" => mode = SaMode::Transport,
                        "tunnel" => mode = SaMode::Tunnel,
                        "any" => mode = SaMode::Any,
                        w => {
                            let help = match closest(w, &["transport", "tunnel", "any"]) {
                                Some(k) if !looks_secret(w) => format!("did you mean \"{k}\"?"),
                                _ => "the mode is transport, tunnel or any".to_string(),
                            };
                            let d = self.describe(v);
                            self.error(v, format!("invalid mode {d}"), Some(help));
                            ok = false;
                        }
                    }
                }
                "u" => {
                    let v = self.expect_value(i, "the reqid")?;
                    match self.decimal::<u32>(v, "reqid") {
                        Some(r) => match check_reqid(r) {
                            Ok(()) => reqid = r,
                            Err(m) => {
                                self.error(v, m, None);
                                ok = false;
                            }
                        },
                        None => ok = false,
                    }
                }
                "r" => {
                    let v = self.expect_value(i, "the replay window size")?;
                    match self.decimal::<u32>(v, "replay window size") {
                        Some(r) => replay_window = r,
                        None => ok = false,
                    }
                }
                "f" => {
                    let v = self.expect_value(i, "the padding option")?;
                    let w = self.word(v);
                    if let Some(p) = PAD_OPTIONS.iter().find(|p| **p == w) {
                        self.warn(
                            v,
                            format!("-f {p} is ignored: Linux XFRM has no such setting"),
                            None,
                        );
                    } else {
                        let d = self.describe(v);
                        self.error(
                            v,
                            format!("invalid -f option {d}"),
                            Some(format!("-f takes one of {}", PAD_OPTIONS.join(", "))),
                        );
                        ok = false;
                    }
                }
                "lh" | "ls" | "bh" | "bs" => {
                    let what = if name.starts_with('l') {
                        "lifetime in seconds"
                    } else {
                        "lifetime in bytes"
                    };
                    let v = self.expect_value(i, what)?;
                    match self.decimal::<u64>(v, what) {
                        Some(n) => match name {
                            "lh" => lifetime.hard_secs = Some(n),
                            "ls" => lifetime.soft_secs = Some(n),
                            "bh" => lifetime.hard_bytes = Some(n),
                            _ => lifetime.soft_bytes = Some(n),
                        },
                        None => ok = false,
                    }
                }
                "E" => {
                    let slot = self.algorithm(i, Role::Encryption)?;
                    ok &= slot.spec.is_some() && slot.key.is_some();
                    enc = Some(slot);
                }
                "A" => {
                    let slot = self.algorithm(i, Role::Authentication)?;
                    ok &= slot.spec.is_some() && slot.key.is_some();
                    auth = Some(slot);
                }
                _ => {
                    return Err(self.fail(
                        i,
                        "IPComp (-C) is not supported".to_string(),
                        Some("hagent installs esp or ah SAs".to_string()),
                    ));
                }
            }
        }

        if let Err(m) = check_lifetime(&lifetime) {
            self.error(kw, m, None);
            ok = false;
        }
        let (Some(src), Some(dst), Some(proto), Some(spi), true) = (src, dst, proto, spi, ok)
        else {
            return Ok(());
        };
        let class = enc.as_ref().and_then(|s| s.spec).map(EncClass::of);
        if let Err((part, m)) = check_combination(proto, class, auth.is_some()) {
            let at = match part {
                Part::Statement => kw,
                Part::Encryption => enc.as_ref().map_or(kw, |s| s.at),
                Part::Authentication => auth.as_ref().map_or(kw, |s| s.at),
            };
            self.error(at, m, None);
            return Ok(());
        }
        let take = |slot: Option<AlgSlot>| slot.and_then(|s| Some((s.spec?.name, s.key?)));
        let enc_at = enc.as_ref().map(|s| s.at);
        let parts = ManualSaParts {
            src,
            dst,
            proto,
            spi,
            mode,
            reqid,
            replay_window,
            encryption: take(enc),
            authentication: take(auth),
            lifetime,
            loc: self.loc(kw),
        };
        match ManualSa::from_parts(parts) {
            Ok(sa) => {
                if let Some(w) = sa.unauthenticated_warning() {
                    self.warn(enc_at.unwrap_or(kw), w, None);
                }
                self.sas.push(sa);
            }
            Err(m) => self.error(kw, m, None),
        }
        Ok(())
    }

    /// `-E`/`-A` (token `at`) with its algorithm name and key. Records soft errors in the slot
    /// (a `None` spec or key); fails when the statement's structure is lost.
    fn algorithm(&mut self, at: usize, role: Role) -> PResult<AlgSlot> {
        let i = self.pos;
        let named = match &self.toks[i].tok {
            Tok::Word(w) => {
                !self.is_next_statement(i)
                    && !w.starts_with('-')
                    && !w.starts_with("0x")
                    && !w.starts_with("0X")
                    && !looks_secret(w)
            }
            _ => false,
        };
        if !named {
            let d = self.describe(i);
            let opt = self.word(at).to_string();
            return Err(self.fail(
                i,
                format!(
                    "expected an {} algorithm after {opt}, found {d}",
                    role.noun()
                ),
                Some(format!(
                    "{} takes an algorithm and a key, e.g. {}",
                    role.option(),
                    match role {
                        Role::Encryption => "-E aes-gcm-16 0x…",
                        Role::Authentication => "-A hmac-sha256 0x…",
                    }
                )),
            ));
        }
        self.bump();
        let spec = match lookup(role, self.word(i)) {
            Ok((spec, spelling)) => {
                if let Some(w) = spelling {
                    let key = format!("spelling {}", self.word(i));
                    self.warn_once(&key, i, w, None);
                }
                if let Some(w) = spec.deprecation() {
                    let key = format!("deprecated {}", spec.name);
                    self.warn_once(&key, i, w, Some("reported once per file".to_string()));
                }
                Some(spec)
            }
            Err(e) => {
                self.error(i, e.message, Some(e.help));
                None
            }
        };
        let key = self.key(at, spec);
        Ok(AlgSlot { spec, key, at })
    }

    /// The key after an algorithm. `None` after a recorded error.
    fn key(&mut self, at: usize, spec: Option<&'static AlgSpec>) -> Option<Key> {
        enum Form {
            Hex,
            Quoted,
            Placeholder,
            /// Hex digits without `0x`.
            BareHex,
            Other,
            /// `;`, the end, the next option or statement.
            Absent,
        }
        let i = self.pos;
        let form = match &self.toks[i].tok {
            Tok::Word(w) if w.starts_with("0x") || w.starts_with("0X") => Form::Hex,
            Tok::Quoted(_) => Form::Quoted,
            Tok::Placeholder(_) => Form::Placeholder,
            Tok::Word(w)
                if w.starts_with('-')
                    || SA_OPTIONS.contains(&w.as_str())
                    || self.is_next_statement(i) =>
            {
                Form::Absent
            }
            Tok::Word(w) if w.chars().all(|c| c.is_ascii_hexdigit()) => Form::BareHex,
            Tok::Word(_) => Form::Other,
            Tok::Semi | Tok::Eof => Form::Absent,
        };
        let hint = spec.map(AlgSpec::key_hint);
        let decoded: Result<Key, (u32, String, Option<String>)> = match form {
            Form::Hex => {
                let Tok::Word(w) = &self.toks[i].tok else {
                    return None;
                };
                decode_hex(&w[2..]).map_err(|e| {
                    let off = match e {
                        HexError::BadDigit(k) => u32::try_from(k + 2).unwrap_or(0),
                        HexError::Odd(_) => 0,
                    };
                    (off, e.message(), None)
                })
            }
            Form::Quoted => match &self.toks[i].tok {
                Tok::Quoted(s) => Ok(Key::from_slice(s.as_bytes())),
                _ => return None,
            },
            Form::Placeholder => {
                let shown = match &self.toks[i].tok {
                    Tok::Placeholder(p) => shown_placeholder(p),
                    _ => String::new(),
                };
                Err((
                    0,
                    format!(
                        "the key is a placeholder ({shown}), not a key: replace it with the real \
                         shared secret"
                    ),
                    hint,
                ))
            }
            Form::BareHex => Err((
                0,
                "a hex key must start with 0x (the key is not shown)".to_string(),
                None,
            )),
            Form::Other => Err((
                0,
                format!(
                    "expected a key (0x followed by hex digits, or \"a quoted string\"), found {}",
                    self.describe(i)
                ),
                hint,
            )),
            Form::Absent if spec.is_some_and(AlgSpec::is_null) => {
                return Some(Key::new(Vec::new()));
            }
            Form::Absent => {
                let (line, col) = self.prev_end();
                let opt = self.word(at).to_string();
                let what = match spec {
                    Some(s) => format!("{opt} {}", s.name),
                    None => opt,
                };
                self.error_at(line, col, format!("missing the key after {what}"), hint);
                return None;
            }
        };
        self.bump();
        match decoded {
            Ok(key) => {
                if let Some(spec) = spec
                    && let Err(m) = spec.check_key_len(key.len())
                {
                    self.error(i, m, None);
                    return None;
                }
                Some(key)
            }
            Err((off, m, h)) => {
                let (line, col) = (self.toks[i].line, self.toks[i].col.saturating_add(off));
                self.error_at(line, col, m, h);
                None
            }
        }
    }

    // --- spdadd ---

    fn stmt_spdadd(&mut self, kw: usize) -> PResult<()> {
        let mut ok = self.family_flags();
        let src_i = self.expect_word("the source address range")?;
        let src = self.range(src_i, "source");
        let dst_i = self.expect_word("the destination address range")?;
        let dst = self.range(dst_i, "destination");
        let up_i = self.expect_word("the upper-layer protocol (any, icmp6, tcp, udp, 135, …)")?;
        let number = self.upper(up_i);
        ok &= src.is_some() && dst.is_some() && number.is_some();

        // `icmp6 type[,code]` / `135 type`.
        let mut type_code = None;
        let i = self.pos;
        if self.word(i).starts_with(|c: char| c.is_ascii_digit()) && !self.is_next_statement(i) {
            self.bump();
            match parse_type_code(self.word(i)) {
                Some(tc) if matches!(number, Some(Some(58 | 135))) => type_code = Some(tc),
                Some(_) if number.is_none() => {}
                Some(_) => {
                    self.error(
                        i,
                        "a type[,code] is only allowed after icmp6 (58) or the mobility header \
                         (135)"
                            .to_string(),
                        None,
                    );
                    ok = false;
                }
                None => {
                    let d = self.describe(i);
                    self.error(
                        i,
                        format!("invalid type[,code] {d}: expected numbers from 0 to 255"),
                        None,
                    );
                    ok = false;
                }
            }
        }

        // -P direction [prio …] action [requests]
        let i = self.pos;
        match self.word(i) {
            "-P" => {
                self.bump();
            }
            "P" if !self.is_next_statement(i) => {
                self.bump();
                self.dashless(i, "P");
            }
            _ => {
                let d = self.describe(i);
                return Err(self.fail(
                    i,
                    format!("expected -P and the policy, found {d}"),
                    Some("for example: -P out ipsec esp/transport//require".to_string()),
                ));
            }
        }
        let p_i = i;
        let dir_i = self.expect_value(p_i, "the direction (in, out or fwd)")?;
        let direction = match self.word(dir_i) {
            "in" => Some(PolicyDirection::In),
            "out" => Some(PolicyDirection::Out),
            "fwd" => Some(PolicyDirection::Fwd),
            _ => {
                let d = self.describe(dir_i);
                self.error(
                    dir_i,
                    format!("invalid policy direction {d}: expected in, out or fwd"),
                    None,
                );
                None
            }
        };
        let mut priority = None;
        if matches!(self.word(self.pos), "prio" | "priority") {
            let at = self.bump();
            priority = self.priority(at)?;
            ok &= priority.is_some();
        }
        let act_i = self.expect_value(p_i, "the policy action (ipsec, discard or none)")?;
        let action = match self.word(act_i) {
            "discard" => Some(PolicyAction::Discard),
            "none" => Some(PolicyAction::None),
            "bypass" => Some(PolicyAction::Bypass),
            "entrust" => Some(PolicyAction::Entrust),
            "ipsec" => {
                let mut reqs = Vec::new();
                let mut good = true;
                while matches!(self.peek().tok, Tok::Word(_)) && !self.is_next_statement(self.pos) {
                    let r = self.bump();
                    match parse_request(self.word(r)) {
                        Ok(req) => reqs.push(req),
                        Err((m, h)) => {
                            self.error(r, m, h);
                            good = false;
                        }
                    }
                }
                if reqs.is_empty() && good {
                    self.error(
                        act_i,
                        "ipsec needs at least one request, such as esp/transport//require"
                            .to_string(),
                        None,
                    );
                    good = false;
                }
                good.then_some(PolicyAction::Ipsec(reqs))
            }
            _ => {
                let d = self.describe(act_i);
                self.error(
                    act_i,
                    format!(
                        "invalid policy action {d}: expected ipsec, discard, none, bypass or \
                         entrust"
                    ),
                    None,
                );
                None
            }
        };
        self.expect_semi(kw)?;
        let (Some(src), Some(dst), Some(number), Some(direction), Some(action), true) =
            (src, dst, number, direction, action, ok)
        else {
            return Ok(());
        };
        let upper = match number {
            None => UpperSpec::Any,
            Some(number) => UpperSpec::Protocol { number, type_code },
        };
        self.spd.push(SpdEntry {
            src,
            dst,
            upper,
            direction,
            priority,
            action,
            loc: self.loc(kw),
        });
        let cmd = self.word(kw).to_string();
        self.warn(
            kw,
            format!(
                "{cmd} is ignored: hagent derives its IPsec policies from mip6d.conf \
                 (IPsecPolicySet) and installs them itself"
            ),
            None,
        );
        Ok(())
    }

    /// `address[/prefixlen][[port]]`.
    fn range(&mut self, i: usize, what: &str) -> Option<AddrRange> {
        match parse_range(self.word(i), what) {
            Ok(r) => Some(r),
            Err((m, h)) => {
                self.error(i, m, h);
                None
            }
        }
    }

    /// The upper-layer protocol: `Some(None)` for `any`, `None` after an error.
    fn upper(&mut self, i: usize) -> Option<Option<u8>> {
        let w = self.word(i);
        let n = match w {
            "any" => return Some(None),
            "icmp6" | "ipv6-icmp" | "icmpv6" => 58,
            "tcp" => 6,
            "udp" => 17,
            "sctp" => 132,
            "gre" => 47,
            "esp" => 50,
            "ah" => 51,
            "icmp" => 1,
            "ip4" | "ipv4" | "ipencap" => 4,
            "ipv6" | "ip6" => 41,
            "mh" | "ipv6-mh" | "mobility-header" | "mobility" => 135,
            _ => match w.parse::<u8>() {
                Ok(n) if w.chars().all(|c| c.is_ascii_digit()) => n,
                _ => {
                    let d = self.describe(i);
                    self.error(
                        i,
                        format!("unknown upper-layer protocol {d}"),
                        Some(
                            "use any, a protocol number from 0 to 255, or one of icmp6, \
                             ipv6-icmp, tcp, udp, sctp, gre, esp, ah, mh"
                                .to_string(),
                        ),
                    );
                    return None;
                }
            },
        };
        Some(Some(n))
    }

    /// After `prio`/`priority` (token `at`): `low|def|high[{+|-}N]`, `BASE + N`, or `N`.
    fn priority(&mut self, at: usize) -> PResult<Option<PolicyPriority>> {
        let v = self.expect_value(at, "the priority (low, def, high, optionally +N or -N)")?;
        let w = self.word(v).to_string();
        let split = w
            .char_indices()
            .skip(1)
            .find(|(_, c)| matches!(c, '+' | '-'))
            .map_or(w.len(), |(k, _)| k);
        let (base_s, rest) = w.split_at(split);
        let base = match base_s {
            "low" => Some(PriorityBase::Low),
            "def" | "default" => Some(PriorityBase::Default),
            "high" => Some(PriorityBase::High),
            _ => None,
        };
        let bad = |p: &mut Self| {
            let d = p.describe(v);
            p.error(
                v,
                format!("invalid priority {d}"),
                Some("write low, def or high, optionally followed by +N or -N".to_string()),
            );
            Ok(None)
        };
        if base.is_none() {
            return match w.parse::<i64>() {
                Ok(offset) => Ok(Some(PolicyPriority { base, offset })),
                Err(_) => bad(self),
            };
        }
        let offset = if rest.is_empty() {
            // `def + 10` or `def +10`
            let i = self.pos;
            match self.word(i) {
                "+" | "-" => {
                    let sign = if self.word(i) == "-" { -1 } else { 1 };
                    self.bump();
                    let n = self.expect_word("the priority offset")?;
                    match self.word(n).parse::<i64>() {
                        Ok(k) if self.word(n).chars().all(|c| c.is_ascii_digit()) => sign * k,
                        _ => {
                            let d = self.describe(n);
                            self.error(n, format!("invalid priority offset {d}"), None);
                            return Ok(None);
                        }
                    }
                }
                x if x.len() > 1
                    && x.starts_with(['+', '-'])
                    && x[1..].chars().all(|c| c.is_ascii_digit()) =>
                {
                    let k = x.parse::<i64>().ok();
                    self.bump();
                    match k {
                        Some(k) => k,
                        None => return bad(self),
                    }
                }
                _ => 0,
            }
        } else {
            match rest.parse::<i64>() {
                Ok(k) if rest[1..].chars().all(|c| c.is_ascii_digit()) => k,
                _ => return bad(self),
            }
        };
        Ok(Some(PolicyPriority { base, offset }))
    }

    // --- whole-file checks ---

    /// Two SAs with the same (destination, protocol, SPI) cannot both exist in the kernel.
    fn check_duplicates(&mut self) {
        let mut seen: HashMap<(Ipv6Addr, IpsecProto, u32), Location> = HashMap::new();
        let mut dups = Vec::new();
        for sa in &self.sas {
            if let Some(first) = seen.get(&(sa.dst, sa.proto, sa.spi)) {
                dups.push(
                    Diagnostic::at(
                        &sa.loc,
                        format!(
                            "duplicate SA: an {} SA with SPI {} ({:#x}) to {} is already defined \
                             at {first}",
                            sa.proto, sa.spi, sa.spi, sa.dst
                        ),
                    )
                    .with_help(
                        "the kernel identifies an SA by (destination, protocol, SPI): give each \
                         SA its own SPI",
                    ),
                );
            } else {
                seen.insert((sa.dst, sa.proto, sa.spi), sa.loc.clone());
            }
        }
        self.errors.extend(dups);
    }
}

fn parse_type_code(w: &str) -> Option<(u8, Option<u8>)> {
    let num = |s: &str| {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            s.parse::<u8>().ok()
        } else {
            None
        }
    };
    match w.split_once(',') {
        Some((t, c)) => Some((num(t)?, Some(num(c)?))),
        None => Some((num(w)?, None)),
    }
}

/// `address[/prefixlen][[port]]`.
fn parse_range(w: &str, what: &str) -> Result<AddrRange, (String, Option<String>)> {
    let (addr_part, port) = match w.find('[') {
        Some(open) => {
            let Some(inner) = w[open + 1..].strip_suffix(']') else {
                return Err((
                    format!("invalid {what} range {}: missing ']'", shown(w)),
                    Some("write address/prefixlen[port], e.g. 2001:db8::/64[any]".to_string()),
                ));
            };
            let port = match inner {
                "any" => None,
                p => match p.parse::<u16>() {
                    Ok(n) if p.chars().all(|c| c.is_ascii_digit()) => Some(n),
                    _ => {
                        return Err((
                            format!("invalid port {} in the {what} range", shown(p)),
                            Some("a port is any or a number from 0 to 65535".to_string()),
                        ));
                    }
                },
            };
            (&w[..open], port)
        }
        None => (w, None),
    };
    let (addr_s, prefix_len) = match addr_part.split_once('/') {
        Some((a, l)) => match l.parse::<u8>() {
            Ok(n) if n <= 128 && l.chars().all(|c| c.is_ascii_digit()) => (a, n),
            _ => {
                return Err((
                    format!(
                        "invalid prefix length {} in the {what} range: expected 0 to 128",
                        shown(l)
                    ),
                    None,
                ));
            }
        },
        None => (addr_part, 128),
    };
    let addr = ipv6(addr_s, &format!("{what} of the policy"))?;
    Ok(AddrRange {
        addr,
        prefix_len,
        port,
    })
}

/// `protocol/mode/src-dst/level`.
fn parse_request(w: &str) -> Result<IpsecRequest, (String, Option<String>)> {
    let form = || {
        Some(
            "a request is protocol/mode/src-dst/level, e.g. esp/transport//require or \
             esp/tunnel/2001:db8::1-2001:db8::2/unique:11"
                .to_string(),
        )
    };
    let parts: Vec<&str> = w.split('/').collect();
    if !(2..=4).contains(&parts.len()) {
        return Err((format!("invalid IPsec request {}", shown(w)), form()));
    }
    let proto = match parts[0] {
        "esp" => SpdProto::Esp,
        "ah" => SpdProto::Ah,
        "ipcomp" => SpdProto::IpComp,
        p => {
            return Err((
                format!(
                    "invalid protocol {} in the IPsec request: expected esp, ah or ipcomp",
                    shown(p)
                ),
                form(),
            ));
        }
    };
    let mode = match parts[1] {
        "transport" => SaMode::Transport,
        "tunnel" => SaMode::Tunnel,
        m => {
            return Err((
                format!(
                    "invalid mode {} in the IPsec request: expected transport or tunnel",
                    shown(m)
                ),
                form(),
            ));
        }
    };
    let endpoints = match parts.get(2).copied().unwrap_or("") {
        "" => None,
        e => {
            let Some((a, b)) = e.split_once('-') else {
                return Err((
                    format!("invalid tunnel endpoints {}: expected src-dst", shown(e)),
                    form(),
                ));
            };
            Some((ipv6(a, "tunnel source")?, ipv6(b, "tunnel destination")?))
        }
    };
    if mode == SaMode::Tunnel && endpoints.is_none() {
        return Err((
            "a tunnel-mode request needs its endpoints: esp/tunnel/src-dst/level".to_string(),
            form(),
        ));
    }
    let level = match parts.get(3).copied().unwrap_or("") {
        "" | "default" => RequestLevel::Default,
        "use" => RequestLevel::Use,
        "require" => RequestLevel::Require,
        "unique" => RequestLevel::Unique(None),
        l => match l.strip_prefix("unique:") {
            Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                let id = n.parse::<u32>().unwrap_or(u32::MAX);
                check_reqid(id).map_err(|m| (m, None))?;
                RequestLevel::Unique(Some(id))
            }
            _ => {
                return Err((
                    format!(
                        "invalid level {} in the IPsec request: expected default, use, require, \
                         unique or unique:N",
                        shown(l)
                    ),
                    form(),
                ));
            }
        },
    };
    Ok(IpsecRequest {
        proto,
        mode,
        endpoints,
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `setkey.conf` from the talk (shared/seed), verbatim: the spaces are U+00A0 as copied
    /// from the slides, the options lost their dashes (`u 10 m transport E … A …`), the
    /// algorithms are written without setkey's hyphens, every key is the placeholder
    /// `0x<your shared secret here>`, and `coo1` (letters o) is a typo for `c001`.
    const TALK: &str = r"#!/usr/sbin/setkey f 
flush;
spdflush;
# MN > HA transport SA for BindingUpdate
add 2001:db8:bee5::dead:face 2001:db8:bee5::coo1:babe esp 1000
  u 10 m transport
  E 3dsecbc 0x<your shared secret here>
  A hmacsha1 0x<your shared secret here> ;
# HA > MN transport SA for BindingAck
add 2001:db8:bee5::coo1:babe 2001:db8:bee5::dead:face esp 1001
  u 10 m transport
  E 3dsecbc 0x<your shared secret here>
  A hmacsha1 0x<your shared secret here> ;
# MN > HA transport SA for Traffic
add 2001:db8:bee5::dead:face 2001:db8:bee5::coo1:babe esp 1002
  u 11 m transport
  E 3dsecbc 0x<your shared secret here>
  A hmacsha1 0x<your shared secret here> ;
# HA > MN transport SA for Traffic
add 2001:db8:bee5::coo1:babe 2001:db8:bee5::dead:face esp 1003
  u 11 m transport
  E 3dsecbc 0x<your shared secret here>
  A hmacsha1 0x<your shared secret here> ;
";

    fn origin() -> &'static Path {
        Path::new("setkey.conf")
    }

    fn ok(text: &str) -> SetkeyFile {
        parse_str(text, origin()).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse_str(text, origin()) {
            Ok(f) => panic!("expected an error, got {f:#?}"),
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

    fn warned(warnings: &[Diagnostic], line: u32, col: u32, needle: &str) -> bool {
        warnings
            .iter()
            .any(|w| w.line == line && w.column == col && w.message.contains(needle))
    }

    /// `0x` and `2 * n` hex digits: byte i is `seed + 7 i`.
    fn hex(n: usize, seed: u8) -> String {
        let mut s = String::from("0x");
        for i in 0..n {
            let b = seed.wrapping_add((i as u8).wrapping_mul(7));
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// One ESP SA from 2001:db8::1 to 2001:db8::2 with SPI 1000 and the given options.
    fn sa(opts: &str) -> String {
        format!("add 2001:db8::1 2001:db8::2 esp 1000 {opts};\n")
    }

    const PLACEHOLDER: &str = "0x<your\u{a0}shared\u{a0}secret\u{a0}here>";

    fn talk_fixed() -> String {
        TALK.replace("coo1", "c001")
    }

    fn talk_keyed() -> String {
        talk_fixed()
            .lines()
            .map(|l| {
                if l.contains("3dsecbc") {
                    l.replace(PLACEHOLDER, &hex(24, 1))
                } else if l.contains("hmacsha1") {
                    l.replace(PLACEHOLDER, &hex(20, 2))
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    // --- the talk ---

    #[test]
    fn talk_verbatim_reports_the_typo_and_the_placeholders() {
        assert!(
            TALK.contains('\u{a0}'),
            "the seed must keep its no-break spaces"
        );
        let e = err(TALK);
        let shown: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
        let bad = "invalid IPv6 address \"2001:db8:bee5::coo1:babe\"";
        let expected_addr = [
            format!("setkey.conf:5:30: {bad} as the SA's destination"),
            format!("setkey.conf:10:5: {bad} as the SA's source"),
            format!("setkey.conf:15:30: {bad} as the SA's destination"),
            format!("setkey.conf:20:5: {bad} as the SA's source"),
        ];
        for x in &expected_addr {
            assert!(shown.contains(x), "{x} missing in\n{e}");
        }
        for d in e.errors.iter().filter(|d| d.message.contains(bad)) {
            assert!(
                d.help
                    .as_deref()
                    .unwrap()
                    .contains("2001:db8:bee5::c001:babe"),
                "{d:?}"
            );
        }
        let placeholders = e
            .errors
            .iter()
            .filter(|d| d.message.starts_with("the key is a placeholder"))
            .count();
        assert_eq!(placeholders, 8, "{e}");
        assert_eq!(e.errors.len(), 12, "{e}");
    }

    #[test]
    fn talk_without_the_typo_fails_only_on_the_placeholder_keys() {
        let e = err(&talk_fixed());
        let got: Vec<(u32, u32)> = e.errors.iter().map(|d| (d.line, d.column)).collect();
        // Per SA (the `add` on lines 5, 10, 15, 20): the -E key and the -A key.
        let want: Vec<(u32, u32)> = [5, 10, 15, 20]
            .iter()
            .flat_map(|l| [(l + 2, 13), (l + 3, 14)])
            .collect();
        assert_eq!(got, want, "{e}");
        for d in &e.errors {
            assert_eq!(
                d.message,
                "the key is a placeholder (\"0x<your shared secret here>\"), \
                 not a key: replace it with the real shared secret"
            );
            let help = d.help.as_deref().unwrap();
            if d.column == 13 {
                assert!(help.starts_with("3des-cbc takes a 24-byte key (0x and 48 hex digits)"));
                assert!(help.contains("-N24"), "{help}");
            } else {
                assert!(help.starts_with("hmac-sha1 takes a 20-byte key (0x and 40 hex digits)"));
            }
        }
        let w = &e.warnings;
        assert!(
            warned(w, 7, 5, "\"3dsecbc\" is read as \"3des-cbc\""),
            "{w:#?}"
        );
        assert!(
            warned(w, 8, 5, "\"hmacsha1\" is read as \"hmac-sha1\""),
            "{w:#?}"
        );
        assert!(warned(w, 7, 5, "3des-cbc is deprecated"), "{w:#?}");
        assert!(warned(w, 8, 5, "hmac-sha1 is deprecated"), "{w:#?}");
        assert!(
            warned(w, 6, 3, "option \"u\" without its leading '-'"),
            "{w:#?}"
        );
        assert!(warned(w, 5, 4, "U+00A0 (no-break space)"), "{w:#?}");
        assert!(warned(w, 2, 1, "flush is not executed"), "{w:#?}");
        assert!(warned(w, 3, 1, "spdflush is not executed"), "{w:#?}");
        // Each is reported once per file.
        assert_eq!(w.len(), 8, "{w:#?}");
    }

    #[test]
    fn talk_with_real_keys_parses() {
        let f = ok(&talk_keyed());
        assert!(f.flush && f.spdflush);
        assert!(f.spd.is_empty());
        assert_eq!(f.sas.len(), 4);
        let (mn, ha) = (a("2001:db8:bee5::dead:face"), a("2001:db8:bee5::c001:babe"));
        for (k, sa) in f.sas.iter().enumerate() {
            assert_eq!(sa.spi, 1000 + k as u32);
            assert_eq!(sa.reqid, [10, 10, 11, 11][k]);
            assert_eq!(sa.mode, SaMode::Transport);
            assert_eq!(sa.proto, IpsecProto::Esp);
            assert_eq!(sa.replay_window, 0);
            let (src, dst) = if k % 2 == 0 { (mn, ha) } else { (ha, mn) };
            assert_eq!((sa.src, sa.dst), (src, dst));
            assert_eq!(sa.loc.line, 5 + 5 * k as u32);
            assert_eq!(sa.loc.column, 1);
            let enc = sa.encryption.as_ref().unwrap();
            assert_eq!(enc.name_setkey, "3des-cbc");
            assert_eq!(enc.xfrm_name, "cbc(des3_ede)");
            assert_eq!(enc.key.len(), 24);
            assert_eq!(enc.key, Key::from_hex(&hex(24, 1)).unwrap());
            assert_eq!((enc.icv_bits, enc.trunc_bits), (None, None));
            let auth = sa.authentication.as_ref().unwrap();
            assert_eq!(auth.name_setkey, "hmac-sha1");
            assert_eq!(auth.xfrm_name, "hmac(sha1)");
            assert_eq!(auth.trunc_bits, Some(96));
            assert_eq!(auth.key.len(), 20);
            assert_eq!(sa.warnings().len(), 2);
        }
        let w = &f.warnings;
        assert!(
            warned(w, 7, 5, "\"3dsecbc\" is read as \"3des-cbc\""),
            "{w:#?}"
        );
        assert!(
            warned(w, 8, 5, "\"hmacsha1\" is read as \"hmac-sha1\""),
            "{w:#?}"
        );
        assert!(warned(w, 7, 5, "3des-cbc is deprecated"), "{w:#?}");
        assert!(
            warned(w, 8, 5, "use aes-gcm-16, or aes-cbc with hmac-sha256"),
            "{w:#?}"
        );
    }

    #[test]
    fn setkey_spelling_of_the_talk_has_no_spelling_warnings() {
        let text = format!(
            "#!/usr/sbin/setkey -f\nflush;\nspdflush;\n\
             add 2001:db8:bee5::dead:face 2001:db8:bee5::c001:babe esp 1000\n\
             \t-u 10 -m transport\n\t-E 3des-cbc {}\n\t-A hmac-sha1 {} ;\n",
            hex(24, 3),
            hex(20, 4)
        );
        let f = ok(&text);
        assert_eq!(f.sas.len(), 1);
        let msgs: Vec<&str> = f.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
        assert!(!msgs.iter().any(|m| m.contains("is read as")), "{msgs:#?}");
        assert!(warned(&f.warnings, 6, 5, "3des-cbc is deprecated"));
        assert!(warned(&f.warnings, 7, 5, "hmac-sha1 is deprecated"));
    }

    // --- algorithms ---

    #[test]
    fn aes_gcm() {
        for (bytes, bits) in [(20, 128), (28, 192), (36, 256)] {
            for name in ["aes-gcm-16", "rfc4106(gcm(aes))"] {
                let f = ok(&sa(&format!(
                    "-m transport -u 5 -E {name} {}",
                    hex(bytes, 9)
                )));
                assert!(f.warnings.is_empty(), "{:#?}", f.warnings);
                let s = &f.sas[0];
                let enc = s.encryption.as_ref().unwrap();
                assert_eq!(enc.name_setkey, "aes-gcm-16");
                assert_eq!(enc.xfrm_name, "rfc4106(gcm(aes))");
                assert_eq!(enc.icv_bits, Some(128));
                assert!(enc.is_aead());
                assert_eq!(enc.key.len() * 8, bits + 32);
                assert!(s.authentication.is_none());
                assert_eq!((s.reqid, s.mode), (5, SaMode::Transport));
            }
        }
        let d = one_err(&sa(&format!("-E aes-gcm-16 {}", hex(16, 1))));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:52: aes-gcm-16 needs a key of 20, 28 or 36 bytes: a 16, 24 or 32-byte \
             AES key followed by a 4-byte salt, but this key has 16 bytes"
        );
        let d = one_err(&sa(&format!(
            "-E aes-gcm-16 {} -A hmac-sha256 {}",
            hex(20, 1),
            hex(32, 2)
        )));
        assert!(
            d.message.contains("-A cannot be combined with an AEAD"),
            "{d}"
        );
        assert_eq!(d.column, 95);
    }

    #[test]
    fn every_algorithm_maps_to_xfrm() {
        let cases: &[(&str, &str, usize, Option<u32>)] = &[
            ("aes-cbc", "cbc(aes)", 16, None),
            ("aes-cbc", "cbc(aes)", 24, None),
            ("rijndael-cbc", "cbc(aes)", 32, None),
            ("aes-ctr", "rfc3686(ctr(aes))", 20, None),
            ("aes-ctr", "rfc3686(ctr(aes))", 36, None),
            ("3des-cbc", "cbc(des3_ede)", 24, None),
            ("des-cbc", "cbc(des)", 8, None),
        ];
        for &(name, xfrm, len, _) in cases {
            let f = ok(&sa(&format!(
                "-E {name} {} -A hmac-sha256 {}",
                hex(len, 1),
                hex(32, 2)
            )));
            let s = &f.sas[0];
            assert_eq!(s.encryption.as_ref().unwrap().xfrm_name, xfrm, "{name}");
            assert_eq!(s.authentication.as_ref().unwrap().trunc_bits, Some(128));
        }
        let auths: &[(&str, &str, usize, u32)] = &[
            ("hmac-sha1", "hmac(sha1)", 20, 96),
            ("hmac-sha256", "hmac(sha256)", 32, 128),
            ("hmac-sha384", "hmac(sha384)", 48, 192),
            ("hmac-sha512", "hmac(sha512)", 64, 256),
            ("hmac-md5", "hmac(md5)", 16, 96),
            ("aes-xcbc-mac", "xcbc(aes)", 16, 96),
        ];
        for &(name, xfrm, len, trunc) in auths {
            let f = ok(&sa(&format!(
                "-E aes-cbc {} -A {name} {}",
                hex(16, 1),
                hex(len, 2)
            )));
            let auth = f.sas[0].authentication.as_ref().unwrap();
            assert_eq!(
                (auth.xfrm_name, auth.trunc_bits),
                (xfrm, Some(trunc)),
                "{name}"
            );
            assert_eq!(auth.key.len(), len);
        }
        // null encryption: no key, or an empty one.
        for e in ["-E null", "-E null \"\"", "-E null 0x"] {
            let f = ok(&sa(&format!("{e} -A hmac-sha256 {}", hex(32, 2))));
            let enc = f.sas[0].encryption.as_ref().unwrap();
            assert_eq!(
                (enc.xfrm_name, enc.key.len()),
                ("ecb(cipher_null)", 0),
                "{e}"
            );
        }
        // A quoted key is its bytes.
        let f = ok(&sa("-E aes-cbc \"0123456789abcdef\" -A hmac-sha256 \
                        \"0123456789abcdef0123456789abcdef\""));
        assert_eq!(
            f.sas[0].encryption.as_ref().unwrap().key.as_bytes(),
            b"0123456789abcdef"
        );
        // Deprecated ones warn.
        for (opts, needle) in [
            (
                format!("-E des-cbc {} -A hmac-sha256 {}", hex(8, 1), hex(32, 1)),
                "des-cbc is deprecated",
            ),
            (
                format!("-E aes-cbc {} -A hmac-md5 {}", hex(16, 1), hex(16, 1)),
                "hmac-md5 is deprecated",
            ),
        ] {
            let f = ok(&sa(&opts));
            assert!(
                f.warnings.iter().any(|w| w.message.contains(needle)),
                "{:#?}",
                f.warnings
            );
        }
        assert_eq!(canonical_algorithm_name("3dsecbc"), Some("3des-cbc"));
        assert_eq!(canonical_algorithm_name("HMAC-SHA256"), Some("hmac-sha256"));
        assert_eq!(canonical_algorithm_name("rc4"), None);
    }

    #[test]
    fn esp_without_authentication_warns() {
        let f = ok(&sa(&format!("-E aes-cbc {}", hex(16, 1))));
        assert!(
            warned(&f.warnings, 1, 38, "encrypted but not authenticated"),
            "{:#?}",
            f.warnings
        );
        assert_eq!(f.sas[0].warnings().len(), 1);
    }

    #[test]
    fn ah_parses() {
        let f = ok(&format!(
            "add 2001:db8::1 2001:db8::2 ah 0x1000 -A hmac-sha256 {};",
            hex(32, 1)
        ));
        let s = &f.sas[0];
        assert_eq!((s.proto, s.spi), (IpsecProto::Ah, 0x1000));
        assert!(s.encryption.is_none());
        assert_eq!(s.authentication.as_ref().unwrap().xfrm_name, "hmac(sha256)");
    }

    #[test]
    fn options_and_layout() {
        let text = format!(
            "# comment\nadd -6 2001:db8::1   # trailing comment\n\t2001:db8::2\n esp 4096 -m tunnel \
             -u 16383 -r 32 -f zero-pad -lh 3600 -ls 3000 -bh 100000 -bs 90000\n -E aes-cbc {} \
             -A hmac-sha512 {}\n;add 2001:db8::1 2001:db8::3 esp 0xffffffff -m any -E \
             aes-gcm-16 {};",
            hex(32, 1),
            hex(64, 2),
            hex(36, 3)
        );
        let f = ok(&text);
        assert_eq!(f.sas.len(), 2);
        let s = &f.sas[0];
        assert_eq!(
            (s.spi, s.mode, s.reqid, s.replay_window),
            (4096, SaMode::Tunnel, 16383, 32)
        );
        assert_eq!(
            s.lifetime,
            Lifetime {
                hard_secs: Some(3600),
                soft_secs: Some(3000),
                hard_bytes: Some(100_000),
                soft_bytes: Some(90_000),
            }
        );
        assert_eq!((s.loc.line, s.loc.column), (2, 1));
        assert!(
            warned(&f.warnings, 4, 39, "-f zero-pad is ignored"),
            "{:#?}",
            f.warnings
        );
        assert_eq!(f.sas[1].spi, u32::MAX);
        assert_eq!(f.sas[1].mode, SaMode::Any);
        assert_eq!(f.sas[1].reqid, 0);
        // A byte-order mark and CRLF line ends are fine.
        let f = ok(&format!(
            "\u{feff}flush;\r\n{}",
            sa(&format!("-E aes-gcm-16 {}", hex(20, 1)))
        ));
        assert_eq!(f.sas.len(), 1);
    }

    #[test]
    fn flush_and_spdflush_warn_that_nothing_is_flushed() {
        let f = ok("flush;\nspdflush;\nflush esp;\n");
        assert!(f.flush && f.spdflush && f.sas.is_empty());
        let msgs: Vec<String> = f.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "setkey.conf:1:1: flush is not executed: hagent never flushes the kernel's whole \
                 SAD; it only ever removes the SAs it installed itself",
                "setkey.conf:2:1: spdflush is not executed: hagent never flushes the kernel's \
                 whole SPD; it only ever removes the policies it installed itself",
                "setkey.conf:3:1: flush is not executed: hagent never flushes the kernel's whole \
                 SAD; it only ever removes the SAs it installed itself",
            ]
        );
        let d = one_err("flush everything;");
        assert_eq!(d.column, 7);
        let f = ok("");
        assert!(!f.flush && !f.spdflush && f.warnings.is_empty());
    }

    // --- errors ---

    const GCM: &str = "-E aes-gcm-16 0x000102030405060708090a0b0c0d0e0f10111213";

    #[test]
    fn bad_addresses() {
        let d = one_err(&format!("add 2001:db8::zz 2001:db8::2 esp 1000 {GCM};"));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:5: invalid IPv6 address \"2001:db8::zz\" as the SA's source"
        );
        let d = one_err(&format!("add 2001:db8::1 192.0.2.1 esp 1000 {GCM};"));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:17: \"192.0.2.1\" is an IPv4 address: hagent handles IPv6 only"
        );
        let d = one_err(&format!("add -4 2001:db8::1 2001:db8::2 esp 1000 {GCM};"));
        assert_eq!(d.message, "-4: hagent handles IPv6 only");
        let d = one_err(&format!("add ::ffff:192.0.2.1 2001:db8::2 esp 1000 {GCM};"));
        assert!(d.message.contains("IPv4-mapped"), "{d}");
        let d = one_err(&format!("add :: 2001:db8::2 esp 1000 {GCM};"));
        assert!(d.message.contains("unspecified address"), "{d}");
        let d = one_err(&format!("add fe80::1%eth0 2001:db8::2 esp 1000 {GCM};"));
        assert!(d.message.contains("zone indices"), "{d}");
        let d = one_err(&format!("add 2001:db8::1/128 2001:db8::2 esp 1000 {GCM};"));
        assert!(d.message.contains("single address"), "{d}");
        let d = one_err(&format!("add 2001:db8::1 2001:db8::2 ipcomp 1000 {GCM};"));
        assert!(d.message.contains("not supported"), "{d}");
        let d = one_err(&format!("add 2001:db8::1 2001:db8::2 epp 1000 {GCM};"));
        assert_eq!(d.help.as_deref(), Some("did you mean \"esp\"?"));
    }

    #[test]
    fn spi_range() {
        let d = one_err(&format!("add 2001:db8::1 2001:db8::2 esp 100 {GCM};"));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:33: SPI 100 is reserved: SPIs 0 to 255 are reserved (RFC 4303, \
             section 2.1); use 256 (0x100) or more"
        );
        for (spi, needle) in [
            ("0x10", "SPI 16 is reserved"),
            ("0", "SPI 0 is reserved"),
            ("255", "SPI 255 is reserved"),
            ("0x100000000", "too large"),
            ("4294967296", "too large"),
            ("12ab", "invalid SPI \"12ab\""),
            ("0x", "invalid SPI"),
        ] {
            let d = one_err(&format!("add 2001:db8::1 2001:db8::2 esp {spi} {GCM};"));
            assert!(d.message.contains(needle), "{spi}: {d}");
        }
        ok(&format!("add 2001:db8::1 2001:db8::2 esp 256 {GCM};"));
    }

    #[test]
    fn bad_keys() {
        // Odd number of digits.
        let d = one_err(&sa("-E aes-gcm-16 0x123"));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:52: the hex key has an odd number of digits (3): every byte takes two \
             hex digits"
        );
        // A bad digit: the column points at it.
        let d = one_err(&sa("-E aes-gcm-16 0x12g4"));
        assert_eq!((d.line, d.column), (1, 56));
        assert!(d.message.contains("character 3 after 0x"), "{d}");
        // Wrong length for the algorithm.
        let d = one_err(&sa(&format!(
            "-E 3des-cbc {} -A hmac-sha256 {}",
            hex(16, 1),
            hex(32, 1)
        )));
        assert_eq!(
            d.message,
            "3des-cbc needs a 24-byte key (0x and 48 hex digits), but this key has 16 bytes"
        );
        let d = one_err(&sa(&format!(
            "-E aes-cbc {} -A hmac-sha256 {}",
            hex(20, 1),
            hex(32, 1)
        )));
        assert_eq!(
            d.message,
            "aes-cbc needs a key of 16, 24 or 32 bytes, but this key has 20 bytes"
        );
        let d = one_err(&sa(&format!(
            "-E aes-cbc {} -A hmac-sha256 {}",
            hex(16, 1),
            hex(20, 1)
        )));
        assert_eq!(
            d.message,
            "hmac-sha256 needs a 32-byte key (0x and 64 hex digits), but this key has 20 bytes"
        );
        let d = one_err(&sa(&format!(
            "-E null {} -A hmac-sha256 {}",
            hex(4, 1),
            hex(32, 1)
        )));
        assert_eq!(d.message, "null takes no key, but this key has 4 bytes");
        // Missing key, missing 0x, something else.
        let d = one_err(&sa(&format!("-E aes-cbc -A hmac-sha256 {}", hex(32, 1))));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:48: missing the key after -E aes-cbc"
        );
        let d = one_err(&sa(
            "-E aes-gcm-16 000102030405060708090a0b0c0d0e0f10111213",
        ));
        assert_eq!(
            d.message,
            "a hex key must start with 0x (the key is not shown)"
        );
        let d = one_err(&sa("-E aes-gcm-16 secret"));
        assert!(d.message.starts_with("expected a key"), "{d}");
        let d = one_err(&sa("-E aes-gcm-16 <key>"));
        assert!(
            d.message
                .starts_with("the key is a placeholder (\"<key>\")"),
            "{d}"
        );
        // Unterminated quote.
        let e = err("add 2001:db8::1 2001:db8::2 esp 1000 -E aes-cbc \"abc\n;");
        assert!(
            e.errors[0]
                .message
                .starts_with("unterminated quoted string"),
            "{e}"
        );
        assert_eq!(e.errors[0].column, 49);
    }

    #[test]
    fn bad_algorithms() {
        let d = one_err(&sa(&format!("-E aes-cbx {}", hex(16, 1))));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:41: unknown encryption algorithm \"aes-cbx\""
        );
        assert_eq!(d.help.as_deref(), Some("did you mean \"aes-cbc\"?"));
        let d = one_err(&sa(&format!("-E rot13 {}", hex(16, 1))));
        assert_eq!(
            d.help.as_deref(),
            Some("supported with -E: aes-gcm-16, aes-cbc, aes-ctr, 3des-cbc, des-cbc, null")
        );
        let d = one_err(&sa(&format!("-E hmac-sha256 {}", hex(32, 1))));
        assert_eq!(
            d.message,
            "hmac-sha256 is an authentication algorithm: give it with -A, not -E"
        );
        let d = one_err(&sa(&format!(
            "-E aes-cbc {} -A aes-cbc {}",
            hex(16, 1),
            hex(16, 1)
        )));
        assert_eq!(
            d.message,
            "aes-cbc is an encryption algorithm: give it with -E, not -A"
        );
        let d = one_err(&sa(&format!("-A aes-gcm-16 {}", hex(20, 1))));
        assert!(d.message.contains("AEAD"), "{d}");
        // Combinations.
        let d = one_err(&sa(&format!("-A hmac-sha256 {}", hex(32, 1))));
        assert_eq!(
            (d.column, d.message.as_str()),
            (
                1,
                "an esp SA needs an encryption algorithm (-E), for example -E aes-gcm-16 KEY"
            )
        );
        let d = one_err(&sa("-E null"));
        assert_eq!(
            d.message,
            "esp with -E null and no -A would neither encrypt nor authenticate"
        );
        let d = one_err(&format!("add 2001:db8::1 2001:db8::2 ah 1000 {GCM};"));
        assert_eq!(d.message, "ah cannot encrypt: -E is not allowed with ah");
        let d = one_err("add 2001:db8::1 2001:db8::2 ah 1000;");
        assert!(
            d.message
                .starts_with("an ah SA needs an authentication algorithm"),
            "{d}"
        );
        // No algorithm name at all.
        let d = one_err(&sa(&format!("-E {}", hex(16, 1))));
        assert!(
            d.message
                .starts_with("expected an encryption algorithm after -E"),
            "{d}"
        );
    }

    #[test]
    fn bad_options() {
        let d = one_err(&sa(&format!("-m transprt {GCM}")));
        assert_eq!(d.message, "invalid mode \"transprt\"");
        assert_eq!(d.help.as_deref(), Some("did you mean \"transport\"?"));
        let d = one_err(&sa(&format!("-u 0 {GCM}")));
        assert_eq!(
            d.message,
            "reqid 0 is out of range: setkey allows 1 to 16383 (0x3fff)"
        );
        let d = one_err(&sa(&format!("-u 16384 {GCM}")));
        assert!(d.message.starts_with("reqid 16384 is out of range"), "{d}");
        let d = one_err(&sa(&format!("-u 0x10 {GCM}")));
        assert_eq!(
            d.message,
            "invalid reqid \"0x10\": expected a decimal number"
        );
        let d = one_err(&sa(&format!("-u 99999999999 {GCM}")));
        assert!(d.message.contains("too large"), "{d}");
        let d = one_err(&sa(&format!("-x 1 {GCM}")));
        assert_eq!(d.to_string(), "setkey.conf:1:38: unknown option \"-x\"");
        let d = one_err(&sa(&format!("{GCM} -e null")));
        assert!(
            d.help.as_deref().unwrap().starts_with("did you mean -E?"),
            "{d:?}"
        );
        let d = one_err(&sa(&format!("-m tunnel -m transport {GCM}")));
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:48: -m is given twice (first at setkey.conf:1:38)"
        );
        let d = one_err(&sa(&format!("-m {GCM}")));
        assert!(d.message.starts_with("missing the mode"), "{d}");
        let d = one_err(&sa(&format!("-f odd-pad {GCM}")));
        assert!(d.message.starts_with("invalid -f option"), "{d}");
        let d = one_err(&sa(&format!("-lh 10 -ls 20 {GCM}")));
        assert!(
            d.message.contains("soft lifetime (-ls 20) is longer"),
            "{d}"
        );
        let d = one_err(&sa(&format!("-C deflate {GCM}")));
        assert_eq!(d.message, "IPComp (-C) is not supported");
        let d = one_err(&sa(&format!("{GCM} trailing")));
        assert!(
            d.message.starts_with("unexpected \"trailing\" in add"),
            "{d}"
        );
    }

    #[test]
    fn missing_semicolons() {
        // Between two statements: reported at the end of the first, the second still parses.
        let text = format!(
            "add 2001:db8::1 2001:db8::2 esp 1000 {GCM}\nadd 2001:db8::1 2001:db8::2 esp 1000x {GCM};"
        );
        let e = err(&text);
        assert_eq!(e.errors.len(), 2, "{e}");
        assert_eq!(
            e.errors[0].to_string(),
            "setkey.conf:1:94: missing ';' at the end of the add statement that starts on line 1"
        );
        assert_eq!((e.errors[1].line, e.errors[1].column), (2, 33));
        // At the end of the file.
        let d = one_err(&format!("add 2001:db8::1 2001:db8::2 esp 1000 {GCM}"));
        assert_eq!((d.line, d.column), (1, 94));
        assert!(d.message.starts_with("missing ';'"));
        let d = one_err("flush\nspdflush;");
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:6: missing ';' at the end of the flush statement that starts on line 1"
        );
        let d = one_err("add 2001:db8::1 2001:db8::2 esp\n");
        assert_eq!(
            d.to_string(),
            "setkey.conf:1:32: missing the SPI (found the end of the file)"
        );
    }

    #[test]
    fn duplicate_spi() {
        let k = GCM;
        let text = format!(
            "add 2001:db8::1 2001:db8::2 esp 1000 {k};\n\
             add 2001:db8::3 2001:db8::2 esp 0x3e8 {k};\n\
             add 2001:db8::1 2001:db8::2 ah 1000 -A hmac-sha256 {};\n\
             add 2001:db8::2 2001:db8::1 esp 1000 {k};\n",
            hex(32, 1)
        );
        let d = one_err(&text);
        assert_eq!(
            d.to_string(),
            "setkey.conf:2:1: duplicate SA: an esp SA with SPI 1000 (0x3e8) to 2001:db8::2 is \
             already defined at setkey.conf:1:1"
        );
    }

    #[test]
    fn commands() {
        let d = one_err("ad 2001:db8::1;\nflush;");
        assert_eq!(d.to_string(), "setkey.conf:1:1: unknown command \"ad\"");
        assert_eq!(d.help.as_deref(), Some("did you mean \"add\"?"));
        let d = one_err("delete 2001:db8::1 2001:db8::2 esp 1000;");
        assert_eq!(
            d.message,
            "\"delete\" is not supported in a file hagent reads"
        );
        let d = one_err("\"quoted\";");
        assert!(d.message.starts_with("expected a command"), "{d}");
        // Empty statements are fine.
        ok(";;\n;");
    }

    // --- spdadd ---

    #[test]
    fn spdadd_is_parsed_and_ignored() {
        let text = "spdadd 2001:db8::1/128 2001:db8::2/128 135 -P out prio def+10 ipsec \
                    esp/transport//require;\n\
                    spdadd ::/0 2001:db8::2[any] any -P in ipsec \
                    esp/tunnel/2001:db8::a-2001:db8::b/unique:11 ah/transport//use;\n\
                    spdupdate 2001:db8::/64[500] 2001:db8::2 icmp6 135,0 -P fwd priority 100 none;\n\
                    spdadd -6 2001:db8::1 2001:db8::2 ipv6-icmp -P out priority low - 5 discard;\n";
        let f = ok(text);
        assert_eq!(f.spd.len(), 4);
        let e = &f.spd[0];
        assert_eq!(
            e.src,
            AddrRange {
                addr: a("2001:db8::1"),
                prefix_len: 128,
                port: None
            }
        );
        assert_eq!(
            e.upper,
            UpperSpec::Protocol {
                number: 135,
                type_code: None
            }
        );
        assert_eq!(e.direction, PolicyDirection::Out);
        assert_eq!(
            e.priority,
            Some(PolicyPriority {
                base: Some(PriorityBase::Default),
                offset: 10
            })
        );
        assert_eq!(
            e.action,
            PolicyAction::Ipsec(vec![IpsecRequest {
                proto: SpdProto::Esp,
                mode: SaMode::Transport,
                endpoints: None,
                level: RequestLevel::Require,
            }])
        );
        let e = &f.spd[1];
        assert_eq!(e.upper, UpperSpec::Any);
        assert_eq!((e.src.prefix_len, e.dst.port), (0, None));
        let PolicyAction::Ipsec(reqs) = &e.action else {
            panic!()
        };
        assert_eq!(
            reqs[0].endpoints,
            Some((a("2001:db8::a"), a("2001:db8::b")))
        );
        assert_eq!(reqs[0].level, RequestLevel::Unique(Some(11)));
        assert_eq!(
            (reqs[1].proto, reqs[1].level),
            (SpdProto::Ah, RequestLevel::Use)
        );
        let e = &f.spd[2];
        assert_eq!(e.src.port, Some(500));
        assert_eq!(
            e.upper,
            UpperSpec::Protocol {
                number: 58,
                type_code: Some((135, Some(0)))
            }
        );
        assert_eq!(
            e.priority,
            Some(PolicyPriority {
                base: None,
                offset: 100
            })
        );
        assert_eq!(
            (e.direction, &e.action),
            (PolicyDirection::Fwd, &PolicyAction::None)
        );
        let e = &f.spd[3];
        assert_eq!(
            e.priority,
            Some(PolicyPriority {
                base: Some(PriorityBase::Low),
                offset: -5
            })
        );
        assert_eq!(e.action, PolicyAction::Discard);
        assert!(warned(
            &f.warnings,
            1,
            1,
            "spdadd is ignored: hagent derives its IPsec policies from mip6d.conf"
        ));
        assert!(warned(&f.warnings, 3, 1, "spdupdate is ignored"));
        assert_eq!(f.warnings.len(), 4);
    }

    #[test]
    fn spdadd_errors() {
        let base = "spdadd 2001:db8::1 2001:db8::2 any";
        for (tail, needle, col) in [
            (
                " -P sideways ipsec esp/transport//require;",
                "invalid policy direction \"sideways\"",
                39,
            ),
            (
                " -P out ipsec esp/tunnel//require;",
                "a tunnel-mode request needs its endpoints",
                49,
            ),
            (
                " -P out ipsec esp/transport//always;",
                "invalid level \"always\"",
                49,
            ),
            (
                " -P out ipsec esp/transport//unique:0;",
                "reqid 0 is out of range",
                49,
            ),
            (" -P out ipsec esp;", "invalid IPsec request \"esp\"", 49),
            (
                " -P out ipsec foo/transport//require;",
                "invalid protocol \"foo\"",
                49,
            ),
            (" -P out ipsec;", "ipsec needs at least one request", 43),
            (" -P out allow;", "invalid policy action \"allow\"", 43),
            (
                " -P out prio middle discard;",
                "invalid priority \"middle\"",
                48,
            ),
            (" ipsec esp/transport//require;", "expected -P", 36),
            (
                " 1 -P out none;",
                "a type[,code] is only allowed after icmp6",
                36,
            ),
        ] {
            let d = one_err(&format!("{base}{tail}"));
            assert!(d.message.contains(needle), "{tail}: {d}");
            assert_eq!(d.column, col, "{tail}: {d}");
        }
        for (text, needle) in [
            (
                "spdadd 2001:db8::1/129 2001:db8::2 any -P out none;",
                "invalid prefix length \"129\"",
            ),
            (
                "spdadd 10.0.0.0/8 2001:db8::2 any -P out none;",
                "hagent handles IPv6 only",
            ),
            (
                "spdadd 2001:db8::1[http] 2001:db8::2 any -P out none;",
                "invalid port \"http\"",
            ),
            (
                "spdadd 2001:db8::1[80 2001:db8::2 any -P out none;",
                "missing ']'",
            ),
            (
                "spdadd 2001:db8::1 2001:db8::2 tcpp -P out none;",
                "unknown upper-layer protocol",
            ),
            (
                "spdadd 2001:db8::1 2001:db8::2 icmp6 300 -P out none;",
                "invalid type[,code]",
            ),
        ] {
            let d = one_err(text);
            assert!(d.message.contains(needle), "{text}: {d}");
        }
    }

    // --- secrets ---

    #[test]
    fn keys_never_appear_in_output() {
        let enc = hex(32, 0x5a);
        let auth = hex(32, 0xa5);
        let text = sa(&format!("-E aes-cbc {enc} -A hmac-sha256 {auth}"));
        let f = ok(&text);
        let byte_list = format!("{:?}", Key::from_hex(&enc).unwrap().as_bytes());
        for out in [
            format!("{f:?}"),
            format!("{f:#?}"),
            format!("{:?}", f.sas[0]),
        ] {
            for secret in [
                &enc[2..],
                &auth[2..],
                &enc[2..12],
                &auth[20..30],
                &byte_list[1..20],
            ] {
                assert!(!out.contains(secret), "{secret} in {out}");
            }
            assert!(out.contains("Key(<32 bytes>)"), "{out}");
        }
        assert_eq!(
            f.sas[0].encryption.as_ref().unwrap().key.to_string(),
            "Key(<32 bytes>)"
        );

        // Keys in the wrong places, or broken, are not echoed either.
        let odd = format!("{}f", &enc);
        let typo = format!("{}g{}", &enc[..30], &enc[31..]);
        let cases = [
            sa(&format!("-E {enc} -A hmac-sha256 {auth}")),
            sa(&format!("-E aes-cbc {odd} -A hmac-sha256 {auth}")),
            sa(&format!("-E aes-cbc {typo} -A hmac-sha256 {auth}")),
            sa(&format!("-E aes-cbc {} -A hmac-sha256 {auth}", &enc[2..])),
            sa(&format!("-E aes-gcm-16 {enc} -A hmac-sha256 {auth}")),
            sa(&format!("-E aes-cbc {enc} {auth}")),
            sa(&format!(
                "-E aes-cbc \"{}\" -A hmac-sha256 \"{}\" \"{}\"",
                &enc[2..],
                &auth[2..],
                &auth[2..]
            )),
            format!("add {enc} 2001:db8::2 esp 1000 -E aes-cbc {enc};"),
            format!("add 2001:db8::1 2001:db8::2 esp {enc} -E aes-cbc {enc};"),
            format!("add 2001:db8::1 2001:db8::2 {enc} 1000;"),
            format!("{enc};"),
            format!("spdadd {enc} 2001:db8::2 any -P out ipsec {auth};"),
            format!("add 2001:db8::1 2001:db8::2 esp 1000 -m {enc} -u {auth} -E {enc};"),
        ];
        for text in &cases {
            let e = err(text);
            let out = format!("{e}\n{e:?}");
            for secret in [
                &enc[2..],
                &auth[2..],
                &enc[2..12],
                &enc[40..50],
                &auth[12..22],
                &odd[2..],
            ] {
                assert!(!out.contains(secret), "{secret} leaked for {text}:\n{out}");
            }
        }
    }

    #[test]
    fn key_type() {
        let k = Key::from_hex("0x00ff10").unwrap();
        assert_eq!(k.as_bytes(), &[0x00, 0xff, 0x10]);
        assert_eq!(format!("{k:?}"), "Key(<3 bytes>)");
        assert_eq!(k.to_string(), "Key(<3 bytes>)");
        assert_eq!(k.clone(), k);
        assert_ne!(Key::from_slice(&[0, 0xff, 0x11]), k);
        assert_ne!(Key::new(vec![0, 0xff]), k);
        assert!(Key::new(Vec::new()).is_empty());
        assert_eq!(Key::from_hex("0XAB").unwrap().len(), 1);
        assert!(Key::from_hex("abcd").unwrap_err().contains("0x"));
        assert!(Key::from_hex("0xabc").unwrap_err().contains("odd number"));
        assert!(Key::from_hex("0xzz").unwrap_err().contains("character 1"));

        // The wipe writes zeros over the whole allocation, spare capacity included.
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0xa5; 40]);
        let cap = v.capacity();
        wipe_vec(&mut v);
        assert!(v.is_empty());
        // SAFETY: `wipe_vec` has written all `cap` bytes, so they are initialised.
        unsafe { v.set_len(cap) };
        assert!(v.iter().all(|&b| b == 0));
        let mut s = String::from("secret");
        wipe_string(&mut s);
        assert!(s.is_empty());
    }

    // --- the shared rules ---

    fn parts(
        enc: Option<(&'static str, Key)>,
        auth: Option<(&'static str, Key)>,
    ) -> ManualSaParts<'static> {
        ManualSaParts {
            src: a("2001:db8::1"),
            dst: a("2001:db8::2"),
            proto: IpsecProto::Esp,
            spi: 1000,
            mode: SaMode::Transport,
            reqid: 10,
            replay_window: 0,
            encryption: enc,
            authentication: auth,
            lifetime: Lifetime::default(),
            loc: Location {
                file: "hagent.toml".into(),
                line: 3,
                column: 1,
            },
        }
    }

    fn key(n: usize) -> Key {
        Key::from_hex(&hex(n, 1)).unwrap()
    }

    #[test]
    fn from_parts_shares_the_parser_rules() {
        let sa = ManualSa::from_parts(parts(Some(("aes-gcm-16", key(36))), None)).unwrap();
        assert_eq!(
            sa.encryption.as_ref().unwrap().xfrm_name,
            "rfc4106(gcm(aes))"
        );
        assert!(sa.warnings().is_empty());
        let sa = ManualSa::from_parts(parts(
            Some(("3dsecbc", key(24))),
            Some(("hmac-sha1", key(20))),
        ))
        .unwrap();
        assert_eq!(sa.encryption.as_ref().unwrap().name_setkey, "3des-cbc");
        assert_eq!(sa.warnings().len(), 2);

        let mut p = parts(Some(("aes-gcm-16", key(20))), None);
        p.spi = 100;
        let parser = one_err(&format!("add 2001:db8::1 2001:db8::2 esp 100 {GCM};"));
        assert_eq!(ManualSa::from_parts(p).unwrap_err(), parser.message);

        let e = ManualSa::from_parts(parts(
            Some(("aes-cbc", key(20))),
            Some(("hmac-sha256", key(32))),
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "aes-cbc needs a key of 16, 24 or 32 bytes, but this key has 20 bytes"
        );
        let e = ManualSa::from_parts(parts(Some(("blowfish", key(16))), None)).unwrap_err();
        assert!(
            e.starts_with("unknown encryption algorithm \"blowfish\" (supported with -E:"),
            "{e}"
        );
        let e = ManualSa::from_parts(parts(
            Some(("aes-gcm-16", key(20))),
            Some(("hmac-sha256", key(32))),
        ))
        .unwrap_err();
        assert!(e.contains("AEAD"), "{e}");
        let e = ManualSa::from_parts(parts(None, Some(("hmac-sha256", key(32))))).unwrap_err();
        assert!(e.starts_with("an esp SA needs"), "{e}");
        let mut p = parts(Some(("aes-gcm-16", key(20))), None);
        p.reqid = 0x4000;
        assert!(
            ManualSa::from_parts(p)
                .unwrap_err()
                .starts_with("reqid 16384")
        );
        let mut p = parts(Some(("aes-gcm-16", key(20))), None);
        p.reqid = 0;
        assert_eq!(ManualSa::from_parts(p).unwrap().reqid, 0);
        let mut p = parts(Some(("aes-gcm-16", key(20))), None);
        p.dst = Ipv6Addr::UNSPECIFIED;
        assert!(ManualSa::from_parts(p).unwrap_err().contains("unspecified"));
        assert_eq!(parse_spi("0x3e8"), Ok(1000));
        assert!(check_reqid(1).is_ok() && check_reqid(0x3fff).is_ok());
        assert!(Algorithm::encryption("aes-cbc", key(16)).is_ok());
        assert!(Algorithm::authentication("hmac-sha384", key(48)).is_ok());
        assert!(Algorithm::authentication("hmac-sha384", key(32)).is_err());
    }

    // --- files and display ---

    #[test]
    fn config_error_display() {
        let e = err("ad;\nadd 2001:db8::1 2001:db8::2 esp 7 -E aes-cbc 0x00;");
        assert_eq!(
            e.to_string(),
            "setkey.conf:1:1: unknown command \"ad\"\n    help: did you mean \"add\"?\n\
             setkey.conf:2:33: SPI 7 is reserved: SPIs 0 to 255 are reserved (RFC 4303, section \
             2.1); use 256 (0x100) or more\n\
             setkey.conf:2:46: aes-cbc needs a key of 16, 24 or 32 bytes, but this key has 1 byte"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().starts_with("setkey.conf:1:1"));
    }

    #[test]
    fn parse_file_reads_and_checks_the_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("setkey-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("setkey.conf");
        fs::write(&path, talk_keyed()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let f = parse_file(&path).unwrap();
        assert_eq!(f.sas.len(), 4);
        assert_eq!(f.sas[0].loc.file, path);
        assert_eq!(f.warnings[0].line, 0);
        assert!(
            f.warnings[0].message.contains("mode is 0644"),
            "{:?}",
            f.warnings[0]
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let f = parse_file(&path).unwrap();
        assert!(f.warnings.iter().all(|w| w.line != 0));
        fs::write(&path, b"flush;\xff\n").unwrap();
        let e = parse_file(&path).unwrap_err();
        assert!(e.errors[0].message.contains("UTF-8"));
        let e = parse_file(&dir.join("absent.conf")).unwrap_err();
        assert_eq!(e.errors[0].line, 0);
        assert!(
            e.to_string().contains("absent.conf: cannot read the file"),
            "{e}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    // --- robustness ---

    use crate::config::mutate::{XorShift, mutate};

    #[test]
    fn no_input_panics() {
        let seeds = [
            TALK.to_string(),
            talk_keyed(),
            sa(&format!(
                "-m tunnel -u 3 -r 4 -lh 9 -E aes-gcm-16 {} -f seq-pad",
                hex(20, 7)
            )),
            "spdadd 2001:db8::/64[any] ::/0[80] icmp6 135,0 -P out prio def+1 ipsec \
             esp/tunnel/2001:db8::1-2001:db8::2/unique:3 ah/transport//use;\nspdflush;"
                .to_string(),
        ];
        let alphabet: Vec<char> = "-;#\"<>[]/,:+x0123456789abcdefEAmu \n\t\r\u{a0}\u{feff}\u{201E}"
            .chars()
            .collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for i in 0..6000 {
            let text = mutate(&seeds[i % seeds.len()], &alphabet, &mut rng);
            match parse_str(&text, origin()) {
                Ok(f) => {
                    for w in &f.warnings {
                        assert!(w.line >= 1 && w.column >= 1, "{w:?}");
                    }
                    for s in &f.sas {
                        assert!(s.spi >= MIN_SPI);
                    }
                    let _ = format!("{f:?}");
                }
                Err(e) => {
                    assert!(!e.errors.is_empty());
                    for d in &e.errors {
                        assert!(d.line >= 1 && d.column >= 1, "{d:?} for {text:?}");
                        assert!(d.to_string().starts_with("setkey.conf:"));
                    }
                    let _ = e.to_string();
                }
            }
        }
    }
}
