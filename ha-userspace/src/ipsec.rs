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
//! Everything installed is recorded and removed at shutdown, and nothing else is touched:
//! other tools' SAs and policies on the box stay as they are.
//!
//! On a kernel without ESP the first SA fails; start-up stops with a message naming
//! `CONFIG_INET6_ESP` and removes what it had installed.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context as _, bail};
use netlink_packet_xfrm::{
    Address, Id, UserTemplate, XFRM_MODE_TRANSPORT, XFRM_POLICY_ALLOW, XFRM_POLICY_IN,
    XFRM_POLICY_OUT, XFRM_SHARE_ANY,
};

use crate::config::umip::{IpsecPolicySet, IpsecPolicyType, IpsecProto};

/// UMIP's priorities (lower is stronger).
pub const PRIO_BYPASS_ND: u32 = 1;
pub const PRIO_HOME_SIG: u32 = 2;
pub const PRIO_HOME_DATA: u32 = 5;

const IPPROTO_ESP: u8 = 50;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_MH: u8 = 135;

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
    /// ESP transport template with this reqid; None = allow without IPsec (bypass).
    pub esp_reqid: Option<u32>,
}

/// Upper-layer selector: protocol, and the MH/ICMPv6 type inbound (MN → HA) and outbound.
type Selector = (u8, Option<u8>, Option<u8>);

/// The policies an `IPsecPolicySet` stands for on the home agent.
pub fn home_agent_policies(set: &IpsecPolicySet) -> anyhow::Result<Vec<Policy>> {
    let mut out = Vec::new();
    for &(hoa, len) in &set.home_addresses {
        // UMIP binds the policies to the HoA itself (a /128), whatever length the set gives.
        let _ = len;
        for p in &set.policies {
            if p.protocols.iter().any(|proto| *proto != IpsecProto::Esp) {
                bail!(
                    "{}:{}: only UseESP is supported (UseAH/UseIPComp are not)",
                    p.loc.file.display(),
                    p.loc.line
                );
            }
            let (selectors, prio): (Vec<Selector>, u32) = match p.kind {
                // (proto, type in, type out)
                IpsecPolicyType::HomeRegBinding => {
                    (vec![(IPPROTO_MH, Some(5), Some(6))], PRIO_HOME_SIG)
                }
                IpsecPolicyType::Mh => (vec![(IPPROTO_MH, None, None)], PRIO_HOME_SIG),
                IpsecPolicyType::MobPfxDisc => {
                    (vec![(IPPROTO_ICMPV6, Some(146), Some(147))], PRIO_HOME_DATA)
                }
                IpsecPolicyType::Icmp => (vec![(IPPROTO_ICMPV6, None, None)], PRIO_HOME_DATA),
                IpsecPolicyType::Any => (vec![(0, None, None)], PRIO_HOME_DATA),
                // Tunnel-mode policies follow the CoA: installed per binding (not yet).
                _ => continue,
            };
            let to_ha = p.reqid_to_ha;
            let to_mn = if p.reqid_to_mn != 0 {
                p.reqid_to_mn
            } else {
                p.reqid_to_ha
            };
            for (proto, type_in, type_out) in selectors {
                out.push(Policy {
                    src: hoa,
                    src_len: 128,
                    dst: set.home_agent,
                    dst_len: 128,
                    proto,
                    mh_or_icmp_type: type_in,
                    dir: XFRM_POLICY_IN,
                    priority: prio,
                    esp_reqid: Some(to_ha),
                });
                out.push(Policy {
                    src: set.home_agent,
                    src_len: 128,
                    dst: hoa,
                    dst_len: 128,
                    proto,
                    mh_or_icmp_type: type_out,
                    dir: XFRM_POLICY_OUT,
                    priority: prio,
                    esp_reqid: Some(to_mn),
                });
            }
        }
    }
    Ok(out)
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
            });
        }
    }
    v
}

/// An xfrm netlink connection and what we installed through it.
pub struct Ipsec {
    handle: xfrmnetlink::Handle,
    installed: Vec<Policy>,
    /// SAs installed: (src, dst, proto, spi).
    sas: Vec<(Ipv6Addr, Ipv6Addr, u8, u32)>,
}

impl Ipsec {
    pub fn new() -> anyhow::Result<Self> {
        let (conn, handle, _) = xfrmnetlink::new_connection().context("opening xfrm netlink")?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            installed: Vec::new(),
            sas: Vec::new(),
        })
    }

    /// Policies installed so far.
    pub fn installed(&self) -> &[Policy] {
        &self.installed
    }

    /// Installs a policy and remembers it.
    pub async fn install(&mut self, p: &Policy) -> anyhow::Result<()> {
        let mut req = self
            .handle
            .policy()
            .add(IpAddr::V6(p.src), p.src_len, IpAddr::V6(p.dst), p.dst_len)
            .direction(p.dir)
            .priority(p.priority)
            .action(XFRM_POLICY_ALLOW);
        if p.proto != 0 {
            req = req.selector_protocol(p.proto);
        }
        if let Some(t) = p.mh_or_icmp_type {
            req = req.selector_protocol_type(t);
        }
        if let Some(reqid) = p.esp_reqid {
            req = req.add_template(UserTemplate {
                id: Id {
                    daddr: Address::default(),
                    spi: 0,
                    proto: IPPROTO_ESP,
                },
                family: libc::AF_INET6 as u16,
                saddr: Address::default(),
                reqid,
                mode: XFRM_MODE_TRANSPORT,
                share: XFRM_SHARE_ANY,
                optional: 0,
                aalgos: u32::MAX,
                ealgos: u32::MAX,
                calgos: u32::MAX,
            });
        }
        req.execute()
            .await
            .with_context(|| format!("installing the xfrm policy {p:?}"))?;
        self.installed.push(p.clone());
        Ok(())
    }

    /// Installs a manually keyed SA (from a setkey.conf). Key material goes to the kernel
    /// and nowhere else: errors name the SA by addresses and SPI only.
    pub async fn install_sa(&mut self, sa: &crate::config::setkey::ManualSa) -> anyhow::Result<()> {
        use crate::config::setkey::{IpsecProto as P, SaMode};
        let what = format!("SA {} → {} SPI {:#x}", sa.src, sa.dst, sa.spi);
        let proto = match sa.proto {
            P::Esp => IPPROTO_ESP,
            P::Ah => 51,
        };
        let mode = match sa.mode {
            SaMode::Tunnel => 1, // XFRM_MODE_TUNNEL
            SaMode::Transport | SaMode::Any => XFRM_MODE_TRANSPORT,
        };
        let mut req = self
            .handle
            .state()
            .add(IpAddr::V6(sa.src), IpAddr::V6(sa.dst))
            .protocol(proto)
            .spi(sa.spi)
            .mode(mode)
            .reqid(sa.reqid);
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
        req.execute()
            .await
            .map_err(|x| anyhow::anyhow!("installing the {what}: {x}"))?;
        self.sas.push((sa.src, sa.dst, proto, sa.spi));
        Ok(())
    }

    /// Removes everything this instance installed (and only that).
    pub async fn remove_all(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some((src, dst, proto, spi)) = self.sas.pop() {
            if let Err(e) = self
                .handle
                .state()
                .delete(IpAddr::V6(src), IpAddr::V6(dst))
                .protocol(proto)
                .spi(spi)
                .execute()
                .await
            {
                first_error.get_or_insert(
                    anyhow::Error::from(e)
                        .context(format!("removing SA {src} → {dst} SPI {spi:#x}")),
                );
            }
        }
        while let Some(p) = self.installed.pop() {
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
            if let Err(e) = req.execute().await {
                first_error
                    .get_or_insert(anyhow::Error::from(e).context(format!("removing {p:?}")));
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
                esp_reqid: Some(10)
            }
        );
        assert_eq!(
            (p[1].src, p[1].dst, p[1].dir, p[1].esp_reqid),
            (ha, hoa, XFRM_POLICY_OUT, Some(10))
        );
    }
}
