//! Per binding, the tunnel-mode IPsec policies (`TunnelPayload`, `TunnelMh`,
//! `TunnelHomeTesting`) that follow its care-of address, as UMIP keeps them: installed with
//! HA↔HoA templates and moved to the CoA with `XFRM_MSG_MIGRATE` — the kernel moves templates
//! and SAs in one request, so no packet leaves unprotected in between —, migrated at every CoA
//! change, migrated back to the HoA and removed when the binding goes.

use std::{collections::HashMap, net::Ipv6Addr};

use crate::{
    config::umip::IpsecPolicySet,
    ipsec::{self, Ipsec, Side},
};

/// The tunnel-mode IPsec policies of one binding and the CoA they point at now.
pub struct Tunnel {
    policies: Vec<ipsec::Policy>,
    coa: Ipv6Addr,
    /// The mobile network prefixes the policies cover besides the HoA.
    prefixes: Vec<(Ipv6Addr, u8)>,
}

/// Every binding's tunnel policies.
#[derive(Default)]
pub struct Tunnels {
    by_hoa: HashMap<Ipv6Addr, Tunnel>,
}

impl Tunnels {
    /// The tunnel-mode policies `sets` give `hoa` (at-home endpoints); empty without tunnel
    /// types.
    pub fn policies_of(
        sets: &[IpsecPolicySet],
        side: Side,
        hoa: Ipv6Addr,
        prefixes: &[(Ipv6Addr, u8)],
    ) -> anyhow::Result<Vec<ipsec::Policy>> {
        let mut policies = Vec::new();
        for set in sets {
            policies.extend(ipsec::tunnel_policies(set, hoa, prefixes, side)?);
        }
        Ok(policies)
    }

    /// Takes over the tunnel of a binding an earlier daemon made (a restart): its policies
    /// point at `coa` already; they are written again in place (`x` replaces) and followed
    /// from here on. The SAs were put at the CoA by `Ipsec::install_sa`.
    pub async fn adopt(
        &mut self,
        x: &mut Ipsec,
        sets: &[IpsecPolicySet],
        side: Side,
        hoa: Ipv6Addr,
        (coa, prefixes): (Ipv6Addr, &[(Ipv6Addr, u8)]),
    ) -> anyhow::Result<()> {
        let mut policies = Self::policies_of(sets, side, hoa, prefixes)?;
        if policies.is_empty() {
            return Ok(());
        }
        for p in &mut policies {
            if let Some((s, d)) = p.tunnel {
                let moved = |a: Ipv6Addr| if a == hoa { coa } else { a };
                p.tunnel = Some((moved(s), moved(d)));
            }
        }
        for p in &policies {
            x.install(p).await?;
        }
        self.by_hoa.insert(
            hoa,
            Tunnel {
                policies,
                coa,
                prefixes: prefixes.to_vec(),
            },
        );
        Ok(())
    }

    /// Points `hoa`'s tunnel-mode policies (and SAs) at `to` = (CoA, mobile network prefixes):
    /// installs them (at-home endpoints) and migrates them for a new binding, migrates them
    /// for a new CoA (re-installs them when the prefixes changed), and with `None` migrates
    /// them back home and removes them. Nothing to do without tunnel types in `sets`.
    pub async fn follow(
        &mut self,
        x: &mut Ipsec,
        sets: &[IpsecPolicySet],
        side: Side,
        hoa: Ipv6Addr,
        to: Option<(Ipv6Addr, &[(Ipv6Addr, u8)])>,
    ) -> anyhow::Result<()> {
        let current = self.by_hoa.remove(&hoa);
        match (current, to) {
            (None, None) => Ok(()),
            (None, Some((coa, prefixes))) => {
                let mut policies = Vec::new();
                for set in sets {
                    policies.extend(ipsec::tunnel_policies(set, hoa, prefixes, side)?);
                }
                if policies.is_empty() {
                    return Ok(());
                }
                let mut installed = Vec::new();
                let mut result = Ok(());
                for p in &policies {
                    match x.install(p).await {
                        Ok(()) => installed.push(p.clone()),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if result.is_ok() {
                    result = x.migrate(&mut installed, hoa, coa).await;
                }
                match result {
                    Ok(()) => {
                        tracing::info!(%hoa, %coa, policies = installed.len(), "IPsec tunnel policies point at the CoA");
                        self.by_hoa.insert(
                            hoa,
                            Tunnel {
                                policies: installed,
                                coa,
                                prefixes: prefixes.to_vec(),
                            },
                        );
                        Ok(())
                    }
                    Err(e) => {
                        // Whatever moved goes back home, then everything installed goes.
                        let _ = x.migrate(&mut installed, coa, hoa).await;
                        let _ = x.remove(&installed).await;
                        Err(e)
                    }
                }
            }
            (Some(t), Some((coa, prefixes))) if t.prefixes != prefixes => {
                // Other selectors: take the old set down, put the new one up.
                self.by_hoa.insert(hoa, t);
                Box::pin(self.follow(x, sets, side, hoa, None)).await?;
                Box::pin(self.follow(x, sets, side, hoa, Some((coa, prefixes)))).await
            }
            (Some(mut t), Some((coa, _))) => {
                let result = x.migrate(&mut t.policies, t.coa, coa).await;
                match &result {
                    Ok(()) if t.coa != coa => {
                        tracing::info!(%hoa, from = %t.coa, to = %coa, "IPsec tunnel migrated");
                        t.coa = coa;
                    }
                    Ok(()) => {}
                    // Some policies may have moved: move them back, so all point at t.coa.
                    Err(_) => {
                        let _ = x.migrate(&mut t.policies, coa, t.coa).await;
                    }
                }
                self.by_hoa.insert(hoa, t);
                result
            }
            (Some(mut t), None) => {
                // Back to the at-home endpoints, so the SAs are where the next registration
                // expects them; then the policies go.
                let migrated = x.migrate(&mut t.policies, t.coa, hoa).await;
                let removed = x.remove(&t.policies).await;
                tracing::info!(%hoa, "IPsec tunnel policies removed");
                migrated.and(removed)
            }
        }
    }
}
