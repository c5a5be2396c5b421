//! IPsec between mobile nodes and the home agent (RFC 3776, RFC 4877), over xfrm netlink —
//! never by running `ip` or `setkey`.
//!
//! From each `IPsecPolicySet` the home agent installs, as UMIP does at start-up, transport-mode
//! ESP policies for home registration signalling (BU in, BA out; all Mobility Header for `Mh`)
//! at priority 2 (UMIP's MIP6_PRIO_HOME_SIG), ICMPv6 / any-protocol ones at priority 5, and
//! Neighbor Discovery bypass policies at priority 1 so NS/NA never wait for an SA. The kernel
//! then enforces them: an unprotected BU for such a HoA is dropped before it reaches the
//! daemon's socket, so it gets no binding and no BA.
//!
//! Tunnel-mode policies (`TunnelPayload`, `TunnelMh`, `TunnelHomeTesting`) exist per binding,
//! as UMIP does it: installed with templates between the HA and the HoA (the endpoints the
//! manually keyed tunnel SAs are written with), moved to the CoA with `XFRM_MSG_MIGRATE` — the
//! kernel rewrites the policies' templates and re-creates the matching SAs with the new
//! endpoint in one request, so no packet leaves unprotected in between — moved again at every
//! CoA change, and moved back to the HoA and removed at deregistration (the at-home state).
//! The mobile node installs the mirror image of all of this.
//!
//! Everything installed is recorded and removed at shutdown, and nothing else is touched:
//! other tools' SAs and policies on the box stay as they are.
//!
//! On a kernel without ESP the first SA fails; start-up stops with a message naming
//! `CONFIG_INET6_ESP` and removes what it had installed.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_xfrm::{
    Address, Id, MigrateMessage, UserMigrate, UserPolicyId, UserTemplate, XFRM_MODE_TRANSPORT,
    XFRM_MODE_TUNNEL, XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK, XFRM_POLICY_FWD, XFRM_POLICY_IN,
    XFRM_POLICY_OUT, XFRM_SHARE_ANY, XfrmAttrs, XfrmMessage,
};

use crate::config::umip::{IpsecPolicySet, IpsecPolicyType, IpsecProto};

/// UMIP's priorities (lower is stronger).
pub const PRIO_BYPASS_ND: u32 = 1;
pub const PRIO_HOME_SIG: u32 = 2;
pub const PRIO_HOME_DATA: u32 = 5;
/// UMIP's MIP6_PRIO_RO_SIG_RR: tunnelled MH (`TunnelMh`, `TunnelHomeTesting`).
pub const PRIO_TUNNEL_MH: u32 = 10;
/// UMIP's MIP6_PRIO_NO_RO_DATA: tunnelled payload (`TunnelPayload`).
pub const PRIO_TUNNEL_PAYLOAD: u32 = 13;

const IPPROTO_ESP: u8 = 50;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_MH: u8 = 135;
const MH_BU: u8 = 5;
const MH_BA: u8 = 6;

/// One policy, as installed (and as compared against `ip xfrm policy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub src: Ipv6Addr,
    pub src_len: u8,
    pub dst: Ipv6Addr,
    pub dst_len: u8,
    /// Upper-layer protocol, 0 = any.
    pub proto: u8,
    /// ICMPv6 / MH type, when the selector has one.
    pub mh_or_icmp_type: Option<u8>,
    /// `XFRM_POLICY_IN` or `XFRM_POLICY_OUT`.
    pub dir: u8,
    pub priority: u32,
    /// ESP template with this reqid; None = allow without IPsec (bypass).
    pub esp_reqid: Option<u32>,
    /// Tunnel mode between these outer addresses (source, destination); None = transport.
    pub tunnel: Option<(Ipv6Addr, Ipv6Addr)>,
    /// Installed as `XFRM_POLICY_BLOCK` (mip6d.conf's `deny`/`block`, as UMIP installs both):
    /// matching traffic is dropped, and no template is attached.
    pub block: bool,
}

/// Which end of the MN–HA security associations this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    HomeAgent,
    MobileNode,
}

impl Side {
    pub fn of(role: crate::config::Role) -> Self {
        match role {
            crate::config::Role::HomeAgent => Self::HomeAgent,
            crate::config::Role::MobileNode => Self::MobileNode,
        }
    }
}

/// Upper-layer selector: protocol, and the MH/ICMPv6 type inbound (MN → HA) and outbound.
type Selector = (u8, Option<u8>, Option<u8>);

/// The transport-mode policies an `IPsecPolicySet` stands for on the home agent.
pub fn home_agent_policies(set: &IpsecPolicySet) -> anyhow::Result<Vec<Policy>> {
    transport_policies(set, Side::HomeAgent)
}

/// The transport-mode policies an `IPsecPolicySet` stands for, installed at start-up: one
/// inbound and one outbound per HoA and signalling type. The mobile node's are the mirror
/// image of the home agent's.
pub fn transport_policies(set: &IpsecPolicySet, side: Side) -> anyhow::Result<Vec<Policy>> {
    let mut out = Vec::new();
    for &(hoa, _len) in &set.home_addresses {
        // UMIP binds the policies to the HoA itself (a /128), whatever length the set gives.
        for p in &set.policies {
            check_protocols(p)?;
            let (selectors, prio): (Vec<Selector>, u32) = match p.kind {
                // (proto, type MN → HA, type HA → MN)
                IpsecPolicyType::HomeRegBinding => {
                    (vec![(IPPROTO_MH, Some(MH_BU), Some(MH_BA))], PRIO_HOME_SIG)
                }
                IpsecPolicyType::Mh => (vec![(IPPROTO_MH, None, None)], PRIO_HOME_SIG),
                IpsecPolicyType::MobPfxDisc => {
                    (vec![(IPPROTO_ICMPV6, Some(146), Some(147))], PRIO_HOME_DATA)
                }
                IpsecPolicyType::Icmp => (vec![(IPPROTO_ICMPV6, None, None)], PRIO_HOME_DATA),
                IpsecPolicyType::Any => (vec![(0, None, None)], PRIO_HOME_DATA),
                // Tunnel-mode policies follow the CoA: see `tunnel_policies`.
                _ => continue,
            };
            let (to_ha, to_mn) = reqids(p);
            for (proto, mut type_to_ha, mut type_to_mn) in selectors {
                // Inbound, the kernel cannot be trusted with the MH type: 6.1's flow decoding
                // reads it past the end of the Mobility Header unless one extension header
                // precedes it (so a BA whose RH2 the data plane removed decodes as type 0 and
                // misses a "type 6" policy). The inbound policy therefore covers every MH
                // between the HoA and the HA — stricter, never weaker; outbound types come
                // from the socket and are exact.
                if proto == IPPROTO_MH {
                    match side {
                        Side::HomeAgent => type_to_ha = None,
                        Side::MobileNode => type_to_mn = None,
                    }
                }
                let to_ha_policy = Policy {
                    src: hoa,
                    src_len: 128,
                    dst: set.home_agent,
                    dst_len: 128,
                    proto,
                    mh_or_icmp_type: type_to_ha,
                    dir: match side {
                        Side::HomeAgent => XFRM_POLICY_IN,
                        Side::MobileNode => XFRM_POLICY_OUT,
                    },
                    priority: prio,
                    esp_reqid: Some(to_ha),
                    tunnel: None,
                    block: !p.allow,
                };
                let to_mn_policy = Policy {
                    src: set.home_agent,
                    dst: hoa,
                    mh_or_icmp_type: type_to_mn,
                    dir: match side {
                        Side::HomeAgent => XFRM_POLICY_OUT,
                        Side::MobileNode => XFRM_POLICY_IN,
                    },
                    esp_reqid: Some(to_mn),
                    ..to_ha_policy.clone()
                };
                out.push(to_ha_policy);
                out.push(to_mn_policy);
            }
        }
    }
    Ok(out)
}

/// The tunnel-mode policies of `set` for one binding of `hoa` and its mobile network
/// `prefixes` (NEMO: UMIP's selectors are any ↔ HoA and any ↔ each MNP), with their templates
/// between the HA and the HoA — the "at home" endpoints the tunnel SAs are written with;
/// [`Ipsec::migrate`] moves them to the CoA. Empty when the set has no tunnel type or does not
/// list `hoa`.
///
/// No MH type selectors here, even for `TunnelHomeTesting` (HoTI/HoT): these policies are
/// looked up from forwarded and received packets, whose MH type the kernel cannot decode
/// reliably (see `transport_policies`), so a typed policy would silently never match and let
/// HoT leave unprotected. `TunnelHomeTesting` therefore tunnels all MH, like `TunnelMh`.
pub fn tunnel_policies(
    set: &IpsecPolicySet,
    hoa: Ipv6Addr,
    prefixes: &[(Ipv6Addr, u8)],
    side: Side,
) -> anyhow::Result<Vec<Policy>> {
    let mut out = Vec::new();
    if !set.home_addresses.iter().any(|&(a, _)| a == hoa) {
        return Ok(out);
    }
    let any = Ipv6Addr::UNSPECIFIED;
    let ha = set.home_agent;
    let mut mobile = vec![(hoa, 128u8)];
    mobile.extend_from_slice(prefixes);
    for p in &set.policies {
        let (proto, prio) = match p.kind {
            IpsecPolicyType::TunnelPayload => (0, PRIO_TUNNEL_PAYLOAD),
            IpsecPolicyType::TunnelMh | IpsecPolicyType::TunnelHomeTesting => {
                (IPPROTO_MH, PRIO_TUNNEL_MH)
            }
            _ => continue,
        };
        check_protocols(p)?;
        let (to_ha, to_mn) = reqids(p);
        for &(addr, len) in &mobile {
            // Traffic from the HoA (or prefix) to anywhere, tunnelled MN → HA.
            let from_mobile = Policy {
                src: addr,
                src_len: len,
                dst: any,
                dst_len: 0,
                proto,
                mh_or_icmp_type: None,
                dir: XFRM_POLICY_OUT,
                priority: prio,
                esp_reqid: Some(to_ha),
                tunnel: Some((hoa, ha)),
                block: !p.allow,
            };
            // Traffic from anywhere to the HoA (or prefix), tunnelled HA → MN.
            let to_mobile = Policy {
                src: any,
                src_len: 0,
                dst: addr,
                dst_len: len,
                esp_reqid: Some(to_mn),
                tunnel: Some((ha, hoa)),
                ..from_mobile.clone()
            };
            match side {
                Side::HomeAgent => {
                    // Decapsulated traffic from the MN is forwarded (and some is for the HA).
                    out.push(Policy {
                        dir: XFRM_POLICY_IN,
                        ..from_mobile.clone()
                    });
                    out.push(Policy {
                        dir: XFRM_POLICY_FWD,
                        ..from_mobile
                    });
                    out.push(to_mobile);
                }
                Side::MobileNode => {
                    out.push(from_mobile);
                    out.push(Policy {
                        dir: XFRM_POLICY_IN,
                        ..to_mobile
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Whether `set` asks for the HoA's payload to be ESP-protected (so the data plane must leave
/// it to the kernel's xfrm).
pub fn protects_payload(set: &IpsecPolicySet, hoa: Ipv6Addr) -> bool {
    set.home_addresses.iter().any(|&(a, _)| a == hoa)
        && set
            .policies
            .iter()
            .any(|p| p.kind == IpsecPolicyType::TunnelPayload)
}

fn check_protocols(p: &crate::config::umip::IpsecPolicy) -> anyhow::Result<()> {
    if p.protocols.iter().any(|proto| *proto != IpsecProto::Esp) {
        bail!(
            "{}:{}: only UseESP is supported (UseAH/UseIPComp are not)",
            p.loc.file.display(),
            p.loc.line
        );
    }
    Ok(())
}

/// (reqid MN → HA, reqid HA → MN): one reqid written stands for both.
fn reqids(p: &crate::config::umip::IpsecPolicy) -> (u32, u32) {
    let to_mn = if p.reqid_to_mn != 0 {
        p.reqid_to_mn
    } else {
        p.reqid_to_ha
    };
    (p.reqid_to_ha, to_mn)
}

/// Neighbor Discovery must never wait for IPsec (UMIP installs these too).
pub fn nd_bypass_policies() -> Vec<Policy> {
    let any = Ipv6Addr::UNSPECIFIED;
    let mut v = Vec::new();
    for t in [135u8, 136] {
        for dir in [XFRM_POLICY_IN, XFRM_POLICY_OUT] {
            v.push(Policy {
                src: any,
                src_len: 0,
                dst: any,
                dst_len: 0,
                proto: IPPROTO_ICMPV6,
                mh_or_icmp_type: Some(t),
                dir,
                priority: PRIO_BYPASS_ND,
                esp_reqid: None,
                tunnel: None,
                block: false,
            });
        }
    }
    v
}

/// xfrm requests made, by operation and outcome (metrics and `hagent stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpsecStats {
    pub policy_add_ok: u64,
    pub policy_add_failed: u64,
    pub policy_delete_ok: u64,
    pub policy_delete_failed: u64,
    pub sa_add_ok: u64,
    pub sa_add_failed: u64,
    pub sa_delete_ok: u64,
    pub sa_delete_failed: u64,
    pub migrate_ok: u64,
    pub migrate_failed: u64,
}

impl IpsecStats {
    /// (operation, result, count) for every counter, the metric's label values.
    pub fn labelled(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            ("policy_add", "ok", self.policy_add_ok),
            ("policy_add", "failed", self.policy_add_failed),
            ("policy_delete", "ok", self.policy_delete_ok),
            ("policy_delete", "failed", self.policy_delete_failed),
            ("sa_add", "ok", self.sa_add_ok),
            ("sa_add", "failed", self.sa_add_failed),
            ("sa_delete", "ok", self.sa_delete_ok),
            ("sa_delete", "failed", self.sa_delete_failed),
            ("migrate", "ok", self.migrate_ok),
            ("migrate", "failed", self.migrate_failed),
        ]
    }
}

/// Counts one outcome into the ok or the failed counter.
fn note<T, E>(r: &Result<T, E>, ok: &mut u64, failed: &mut u64) {
    match r {
        Ok(_) => *ok += 1,
        Err(_) => *failed += 1,
    }
}

/// An xfrm netlink connection and what we installed through it.
pub struct Ipsec {
    handle: xfrmnetlink::Handle,
    stats: IpsecStats,
    installed: Vec<Policy>,
    /// SAs installed, with their current endpoints (a migration moves them).
    sas: Vec<SaRecord>,
    /// Taking over from an earlier daemon of this instance (adopted data plane): policies and
    /// SAs it left are replaced in place (XFRM_MSG_UPD*) instead of refused as existing.
    replace: bool,
}

/// An SA this instance installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SaRecord {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    spi: u32,
    reqid: u32,
    mode: u8,
}

impl Ipsec {
    pub fn new() -> anyhow::Result<Self> {
        let (conn, handle, _) = xfrmnetlink::new_connection().context("opening xfrm netlink")?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            installed: Vec::new(),
            sas: Vec::new(),
            replace: false,
            stats: IpsecStats::default(),
        })
    }

    /// Requests made so far, by operation and outcome.
    pub fn stats(&self) -> IpsecStats {
        self.stats
    }

    /// SAs installed and not removed.
    pub fn sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Replace what an earlier daemon of this instance left instead of refusing it.
    pub fn set_replace(&mut self, on: bool) {
        self.replace = on;
    }

    /// Policies installed so far.
    pub fn installed(&self) -> &[Policy] {
        &self.installed
    }

    /// Installs a policy and remembers it.
    pub async fn install(&mut self, p: &Policy) -> anyhow::Result<()> {
        let req = policy_request(&self.handle, p, self.replace);
        let r = req
            .execute()
            .await
            .with_context(|| format!("installing the xfrm policy {p:?}"));
        note(
            &r,
            &mut self.stats.policy_add_ok,
            &mut self.stats.policy_add_failed,
        );
        r?;
        // A replaced policy is remembered once.
        self.installed.retain(|q| !same_selector(q, p));
        self.installed.push(p.clone());
        Ok(())
    }

    /// Installs a manually keyed SA (from a setkey.conf). Key material goes to the kernel
    /// and nowhere else: errors name the SA by addresses and SPI only.
    /// `at` maps an endpoint to where the SA is now (a restarted home agent puts the tunnel SAs
    /// of a restored binding at its care-of address, where the earlier daemon migrated them).
    pub async fn install_sa(
        &mut self,
        sa: &crate::config::setkey::ManualSa,
        at: impl Fn(Ipv6Addr) -> Ipv6Addr,
    ) -> anyhow::Result<()> {
        use crate::config::setkey::{IpsecProto as P, SaMode};
        let what = format!("SA {} → {} SPI {:#x}", sa.src, sa.dst, sa.spi);
        let proto = match sa.proto {
            P::Esp => IPPROTO_ESP,
            P::Ah => 51,
        };
        let mode = match sa.mode {
            SaMode::Tunnel => XFRM_MODE_TUNNEL,
            SaMode::Transport | SaMode::Any => XFRM_MODE_TRANSPORT,
        };
        let (src, dst) = if mode == XFRM_MODE_TUNNEL {
            (at(sa.src), at(sa.dst))
        } else {
            (sa.src, sa.dst)
        };
        let request = |update: bool| -> anyhow::Result<_> {
            let states = self.handle.state();
            let req = if update {
                states.update(IpAddr::V6(src), IpAddr::V6(dst))
            } else {
                states.add(IpAddr::V6(src), IpAddr::V6(dst))
            };
            let mut req = req.protocol(proto).spi(sa.spi).mode(mode).reqid(sa.reqid);
            let e = |x: xfrmnetlink::Error| anyhow::anyhow!("{what}: {x}");
            if let Some(enc) = &sa.encryption {
                let key = enc.key.as_bytes().to_vec();
                req = match enc.icv_bits {
                    Some(icv) => req.encryption_aead(enc.xfrm_name, &key, icv).map_err(e)?,
                    None => req.encryption(enc.xfrm_name, &key).map_err(e)?,
                };
            }
            if let Some(auth) = &sa.authentication {
                let key = auth.key.as_bytes().to_vec();
                req = match auth.trunc_bits {
                    Some(t) => req
                        .authentication_trunc(auth.xfrm_name, &key, t)
                        .map_err(e)?,
                    None => req.authentication(auth.xfrm_name, &key).map_err(e)?,
                };
            }
            Ok(req)
        };
        // Replacing: update the SA an earlier daemon left (no instant without it); the kernel
        // says ESRCH when there is none, then it is added.
        let mut result = if self.replace {
            request(true)?.execute().await
        } else {
            request(false)?.execute().await
        };
        if self.replace
            && let Err(xfrmnetlink::Error::NetlinkError(m)) = &result
            && m.raw_code() == -libc::ESRCH
        {
            result = request(false)?.execute().await;
        }
        note(
            &result,
            &mut self.stats.sa_add_ok,
            &mut self.stats.sa_add_failed,
        );
        result.map_err(|x| anyhow::anyhow!("installing the {what}: {x}"))?;
        self.sas.push(SaRecord {
            src,
            dst,
            proto,
            spi: sa.spi,
            reqid: sa.reqid,
            mode,
        });
        Ok(())
    }

    /// Moves the tunnel endpoint `from` of `policies` (installed by [`install`](Self::install))
    /// and of the tunnel SAs with their reqids to `to`, with one `XFRM_MSG_MIGRATE` per policy
    /// (RFC 3776 §4.3: the SAs follow the care-of address). The kernel swaps templates and SAs
    /// under its own locks, so packets are protected before and after, never in between.
    /// `policies` are updated to the new endpoints.
    pub async fn migrate(
        &mut self,
        policies: &mut [Policy],
        from: Ipv6Addr,
        to: Ipv6Addr,
    ) -> anyhow::Result<()> {
        if from == to {
            return Ok(());
        }
        let r = self.migrate_all(policies, from, to).await;
        note(
            &r,
            &mut self.stats.migrate_ok,
            &mut self.stats.migrate_failed,
        );
        r
    }

    async fn migrate_all(
        &mut self,
        policies: &mut [Policy],
        from: Ipv6Addr,
        to: Ipv6Addr,
    ) -> anyhow::Result<()> {
        for p in policies.iter_mut() {
            let (Some((ts, td)), Some(reqid)) = (p.tunnel, p.esp_reqid) else {
                continue;
            };
            let moved = |a: Ipv6Addr| if a == from { to } else { a };
            let (ns, nd) = (moved(ts), moved(td));
            if (ns, nd) == (ts, td) {
                continue;
            }
            let mut id = UserPolicyId::default();
            id.selector.source_prefix(&IpAddr::V6(p.src), p.src_len);
            id.selector
                .destination_prefix(&IpAddr::V6(p.dst), p.dst_len);
            id.selector.family = libc::AF_INET6 as u16;
            id.selector.proto = p.proto;
            if let Some(t) = p.mh_or_icmp_type {
                id.selector.sport = u16::from(t);
                id.selector.sport_mask = u16::MAX;
            }
            id.direction = p.dir;
            let family = libc::AF_INET6 as u16;
            let m = UserMigrate {
                old_daddr: Address::from_ipv6(&td),
                old_saddr: Address::from_ipv6(&ts),
                new_daddr: Address::from_ipv6(&nd),
                new_saddr: Address::from_ipv6(&ns),
                proto: IPPROTO_ESP,
                mode: XFRM_MODE_TUNNEL,
                reserved: 0,
                reqid,
                old_family: family,
                new_family: family,
            };
            let msg = MigrateMessage {
                user_policy_id: id,
                nlas: vec![XfrmAttrs::Migrate(m)],
            };
            let mut req = NetlinkMessage::from(XfrmMessage::Migrate(msg));
            req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
            let mut responses = self
                .handle
                .request(req)
                .map_err(|e| anyhow::anyhow!("XFRM_MSG_MIGRATE: {e}"))?;
            while let Some(r) = responses.next().await {
                if let NetlinkPayload::Error(e) = r.payload
                    && e.code.is_some()
                {
                    bail!(
                        "migrating the tunnel of {p:?} from {from} to {to}: {}{}",
                        std::io::Error::from_raw_os_error(-e.raw_code()),
                        if e.raw_code() == -libc::ENOPROTOOPT {
                            " (the kernel was built without CONFIG_XFRM_MIGRATE)"
                        } else {
                            ""
                        }
                    );
                }
            }
            p.tunnel = Some((ns, nd));
            if let Some(i) = self.installed.iter().position(|q| same_selector(q, p)) {
                self.installed[i].tunnel = p.tunnel;
            }
            for sa in &mut self.sas {
                if sa.mode == XFRM_MODE_TUNNEL && sa.reqid == reqid && (sa.src, sa.dst) == (ts, td)
                {
                    (sa.src, sa.dst) = (ns, nd);
                }
            }
        }
        Ok(())
    }

    /// Removes `policies` (installed by [`install`](Self::install)) and forgets them — those
    /// whose removal failed stay recorded, so shutdown tries again.
    pub async fn remove(&mut self, policies: &[Policy]) -> anyhow::Result<()> {
        let mut first_error = None;
        for p in policies {
            let r = self.delete_policy(p).await;
            note(
                &r,
                &mut self.stats.policy_delete_ok,
                &mut self.stats.policy_delete_failed,
            );
            match r {
                Ok(()) => {}
                // Already gone: nothing left to remember.
                Err(e) if is_enoent(&e) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            }
            self.installed.retain(|q| !same_selector(q, p));
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_policy(&self, p: &Policy) -> anyhow::Result<()> {
        let mut req = self
            .handle
            .policy()
            .delete(IpAddr::V6(p.src), p.src_len, IpAddr::V6(p.dst), p.dst_len)
            .direction(p.dir);
        if p.proto != 0 {
            req = req.selector_protocol(p.proto);
        }
        if let Some(t) = p.mh_or_icmp_type {
            req = req.selector_protocol_type(t);
        }
        req.execute()
            .await
            .with_context(|| format!("removing {p:?}"))
    }

    /// Removes everything this instance installed (and only that).
    pub async fn remove_all(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(sa) = self.sas.pop() {
            let r = self
                .handle
                .state()
                .delete(IpAddr::V6(sa.src), IpAddr::V6(sa.dst))
                .protocol(sa.proto)
                .spi(sa.spi)
                .execute()
                .await;
            note(
                &r,
                &mut self.stats.sa_delete_ok,
                &mut self.stats.sa_delete_failed,
            );
            if let Err(e) = r {
                first_error.get_or_insert(anyhow::Error::from(e).context(format!(
                    "removing SA {} → {} SPI {:#x}",
                    sa.src, sa.dst, sa.spi
                )));
            }
        }
        while let Some(p) = self.installed.pop() {
            let r = self.delete_policy(&p).await;
            note(
                &r,
                &mut self.stats.policy_delete_ok,
                &mut self.stats.policy_delete_failed,
            );
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Checks that the kernel can do ESP by installing (and removing) a throwaway SA between
    /// two documentation addresses. Fails with the netlink error and the way out.
    pub async fn probe_esp(&self) -> anyhow::Result<()> {
        let a = IpAddr::V6("2001:db8::fffe:1".parse().expect("literal"));
        let b = IpAddr::V6("2001:db8::fffe:2".parse().expect("literal"));
        let spi = 0x00ff_fffe;
        let key = vec![0x42u8; 20];
        let req = self
            .handle
            .state()
            .add(a, b)
            .protocol(IPPROTO_ESP)
            .spi(spi)
            .mode(XFRM_MODE_TRANSPORT)
            .encryption_aead("rfc4106(gcm(aes))", &key, 128)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match req.execute().await {
            Ok(()) => {
                let _ = self
                    .handle
                    .state()
                    .delete(a, b)
                    .protocol(IPPROTO_ESP)
                    .spi(spi)
                    .execute()
                    .await;
                Ok(())
            }
            Err(e) => bail!(
                "this kernel cannot do ESP for IPv6 (installing a test SA failed: {e}); it was \
                 built without CONFIG_INET6_ESP (or the esp6 module is missing). Either boot a \
                 kernel with CONFIG_INET6_ESP=y/m (Debian's does), or set `UseMnHaIPsec disabled;` \
                 ([ipsec] use_mn_ha_ipsec = false) to run without IPsec"
            ),
        }
    }
}

/// Whether an xfrm request failed with ENOENT.
fn is_enoent(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<xfrmnetlink::Error>(),
        Some(xfrmnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENOENT
    )
}

/// The XFRM_MSG_NEWPOLICY (or UPDPOLICY, `replace`) request installing `p`: a block policy
/// gets `XFRM_POLICY_BLOCK` and no template, an allow policy its ESP template if any.
fn policy_request(
    handle: &xfrmnetlink::Handle,
    p: &Policy,
    replace: bool,
) -> xfrmnetlink::PolicyModifyRequest {
    let policies = handle.policy();
    let (src, dst) = (IpAddr::V6(p.src), IpAddr::V6(p.dst));
    let req = if replace {
        policies.update(src, p.src_len, dst, p.dst_len)
    } else {
        policies.add(src, p.src_len, dst, p.dst_len)
    };
    let mut req = req
        .direction(p.dir)
        .priority(p.priority)
        .action(if p.block {
            XFRM_POLICY_BLOCK
        } else {
            XFRM_POLICY_ALLOW
        });
    if p.proto != 0 {
        req = req.selector_protocol(p.proto);
    }
    if let Some(t) = p.mh_or_icmp_type {
        req = req.selector_protocol_type(t);
    }
    if let (Some(reqid), false) = (p.esp_reqid, p.block) {
        let (saddr, daddr, mode) = match p.tunnel {
            Some((s, d)) => (
                Address::from_ipv6(&s),
                Address::from_ipv6(&d),
                XFRM_MODE_TUNNEL,
            ),
            None => (Address::default(), Address::default(), XFRM_MODE_TRANSPORT),
        };
        req = req.add_template(UserTemplate {
            id: Id {
                daddr,
                spi: 0,
                proto: IPPROTO_ESP,
            },
            family: libc::AF_INET6 as u16,
            saddr,
            reqid,
            mode,
            share: XFRM_SHARE_ANY,
            optional: 0,
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
        });
    }
    req
}

/// Same policy in the kernel's eyes: selector and direction.
/// Whether two policies have the same selector and direction (the kernel's key of a policy).
pub fn same_selector(a: &Policy, b: &Policy) -> bool {
    (
        a.src,
        a.src_len,
        a.dst,
        a.dst_len,
        a.proto,
        a.mh_or_icmp_type,
        a.dir,
    ) == (
        b.src,
        b.src_len,
        b.dst,
        b.dst_len,
        b.proto,
        b.mh_or_icmp_type,
        b.dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::umip;
    use std::path::Path;

    #[test]
    fn seed_policy_set_gives_transport_mh_policies() {
        let conf = "NodeConfig HA;\nInterface \"eth0\";\nUseMnHaIPsec enabled;\nIPsecPolicySet {\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n  IPsecPolicy Mh UseESP 10;\n  IPsecPolicy TunnelPayload UseESP 11;\n}\n";
        let u = umip::parse_str(conf, Path::new("t.conf")).unwrap();
        let p = home_agent_policies(&u.ipsec_policy_sets[0]).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        let hoa: Ipv6Addr = "2001:db8:bee5::dead:face".parse().unwrap();
        let ha: Ipv6Addr = "2001:db8:bee5::c001:babe".parse().unwrap();
        assert_eq!(
            p[0],
            Policy {
                src: hoa,
                src_len: 128,
                dst: ha,
                dst_len: 128,
                proto: 135,
                mh_or_icmp_type: None,
                dir: XFRM_POLICY_IN,
                priority: 2,
                esp_reqid: Some(10),
                tunnel: None,
                block: false,
            }
        );
        assert_eq!(
            (p[1].src, p[1].dst, p[1].dir, p[1].esp_reqid),
            (ha, hoa, XFRM_POLICY_OUT, Some(10))
        );
    }

    // The netlink socket wants a runtime; nothing is sent.
    #[tokio::test(flavor = "current_thread")]
    async fn deny_and_block_policies_are_installed_as_xfrm_block() {
        let conf = "NodeConfig HA;\nInterface \"eth0\";\nUseMnHaIPsec enabled;\nIPsecPolicySet {\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n  IPsecPolicy Mh UseESP 10 deny;\n  IPsecPolicy ICMP UseESP 12 block;\n  IPsecPolicy any UseESP 13 allow;\n  IPsecPolicy TunnelPayload UseESP 11 block;\n}\n";
        let u = umip::parse_str(conf, Path::new("t.conf")).unwrap();
        let set = &u.ipsec_policy_sets[0];
        let allow: Vec<bool> = set.policies.iter().map(|p| p.allow).collect();
        assert_eq!(allow, [false, false, true, false]);
        let hoa: Ipv6Addr = "2001:db8:bee5::dead:face".parse().unwrap();
        let mut all = home_agent_policies(set).unwrap();
        all.extend(tunnel_policies(set, hoa, &[], Side::HomeAgent).unwrap());
        let (_conn, handle, _) = xfrmnetlink::new_connection().unwrap();
        let mut seen = (0, 0);
        for p in &all {
            let expect_block = p.proto != 0 || p.tunnel.is_some();
            assert_eq!(p.block, expect_block, "{p:?}");
            for replace in [false, true] {
                let mut req = policy_request(&handle, p, replace);
                let m = req.message_mut();
                if p.block {
                    assert_eq!(m.user_policy_info.action, XFRM_POLICY_BLOCK, "{p:?}");
                    seen.0 += 1;
                } else {
                    assert_eq!(m.user_policy_info.action, XFRM_POLICY_ALLOW, "{p:?}");
                    seen.1 += 1;
                }
            }
        }
        assert!(seen.0 > 0 && seen.1 > 0, "{seen:?}");
    }

    fn seed_set() -> IpsecPolicySet {
        let conf = "NodeConfig MN;\nInterface \"eth0\";\nMnHomeLink \"eth0\" {\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n}\nUseMnHaIPsec enabled;\nIPsecPolicySet {\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n  IPsecPolicy HomeRegBinding UseESP 10;\n  IPsecPolicy TunnelPayload UseESP 11 12;\n}\n";
        umip::parse_str(conf, Path::new("t.conf"))
            .unwrap()
            .ipsec_policy_sets[0]
            .clone()
    }

    #[test]
    fn the_mobile_node_mirrors_the_home_agent_rfc3776_3() {
        let set = seed_set();
        let ha = home_agent_policies(&set).unwrap();
        let mn = transport_policies(&set, Side::MobileNode).unwrap();
        assert_eq!(ha.len(), 2);
        assert_eq!(mn.len(), 2);
        for (h, m) in ha.iter().zip(&mn) {
            // Same addresses and SA, opposite direction.
            assert_eq!((h.src, h.dst, h.proto), (m.src, m.dst, m.proto));
            assert_eq!(h.esp_reqid, m.esp_reqid);
            assert_ne!(h.dir, m.dir);
        }
        // BU (type 5) from the HoA leaves the MN; inbound, every MH from the HA needs ESP
        // (the kernel's inbound MH type decoding is unreliable).
        let types = |v: &[Policy]| {
            v.iter()
                .map(|p| (p.mh_or_icmp_type, p.dir))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            types(&mn),
            vec![(Some(5), XFRM_POLICY_OUT), (None, XFRM_POLICY_IN)]
        );
        assert_eq!(
            types(&ha),
            vec![(None, XFRM_POLICY_IN), (Some(6), XFRM_POLICY_OUT)]
        );
    }

    #[test]
    fn tunnel_payload_policies_use_both_reqids_and_start_at_home_rfc3776_4_3() {
        let set = seed_set();
        let hoa: Ipv6Addr = "2001:db8:bee5::dead:face".parse().unwrap();
        let ha: Ipv6Addr = "2001:db8:bee5::c001:babe".parse().unwrap();
        let h = tunnel_policies(&set, hoa, &[], Side::HomeAgent).unwrap();
        let dirs: Vec<_> = h.iter().map(|p| (p.dir, p.esp_reqid, p.tunnel)).collect();
        assert_eq!(
            dirs,
            vec![
                (XFRM_POLICY_IN, Some(11), Some((hoa, ha))),
                (XFRM_POLICY_FWD, Some(11), Some((hoa, ha))),
                (XFRM_POLICY_OUT, Some(12), Some((ha, hoa))),
            ]
        );
        assert!(
            h.iter()
                .all(|p| p.priority == PRIO_TUNNEL_PAYLOAD && p.proto == 0)
        );
        let m = tunnel_policies(&set, hoa, &[], Side::MobileNode).unwrap();
        let dirs: Vec<_> = m.iter().map(|p| (p.dir, p.esp_reqid, p.tunnel)).collect();
        assert_eq!(
            dirs,
            vec![
                (XFRM_POLICY_OUT, Some(11), Some((hoa, ha))),
                (XFRM_POLICY_IN, Some(12), Some((ha, hoa))),
            ]
        );
        assert!(protects_payload(&set, hoa));
        // Another HoA: nothing.
        let other: Ipv6Addr = "2001:db8:bee5::1".parse().unwrap();
        assert!(
            tunnel_policies(&set, other, &[], Side::HomeAgent)
                .unwrap()
                .is_empty()
        );
        assert!(!protects_payload(&set, other));
        // A mobile router's prefix gets the same three policies, same templates.
        let mnp: Ipv6Addr = "2001:db8:100::".parse().unwrap();
        let h = tunnel_policies(&set, hoa, &[(mnp, 48)], Side::HomeAgent).unwrap();
        assert_eq!(h.len(), 6);
        assert!(
            h[3..]
                .iter()
                .all(|p| p.tunnel.is_some_and(|(s, d)| s == hoa || d == hoa))
        );
        assert_eq!(
            (h[5].dst, h[5].dst_len, h[5].dir),
            (mnp, 48, XFRM_POLICY_OUT)
        );
    }
}
