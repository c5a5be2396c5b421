//! The mobile node role: movement detection (RFC 6275 §11.5) from link states and addresses,
//! the binding update list ([`bul::MobileNode`], pure) and what it asks for — BUs, the tunnel
//! through [`Bindings`], reclaiming the home address on the home link.

pub mod bul;

use std::{net::Ipv6Addr, time::Duration, time::Instant};

use anyhow::{anyhow, bail};
use ha_common::mh;

use self::bul::{Action, Location, MnSettings, MobileNode};
use crate::{
    bindings::{ApplyError, BindingSpec, Bindings, Op, Origin},
    config::{MobileNodeConfig, is_global_unicast},
    homelink::HomeLink,
    interfaces::Served,
    mobility::{self, MhSender, PacketSender, SignallingStats},
    ndisc::Ndisc,
    sock::Received,
    system,
};

pub struct MobileNodeRole {
    config: MobileNodeConfig,
    bul: MobileNode,
    links: Vec<Served>,
    /// The name of the home link.
    home_interface: String,
    sender: PacketSender,
    mh_sender: MhSender,
    ndisc: Ndisc,
    kernel: HomeLink,
    stats: SignallingStats,
    /// The HoA we put on the loopback (removed at shutdown).
    hoa_on_lo: Option<(u32, Ipv6Addr)>,
}

impl MobileNodeRole {
    /// Starts from where the node is now.
    pub async fn start(
        config: MobileNodeConfig,
        links: Vec<Served>,
        bindings: &mut Bindings,
        now: Instant,
    ) -> anyhow::Result<Self> {
        // A sequence number that differs across restarts (the HA may remember the old one;
        // a 135 resynchronises in any case).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let bul = MobileNode::new(
            MnSettings {
                hoa: config.home_address,
                ha: config.home_agent,
                lifetime_units: mh::secs_to_lifetime_units(config.binding_lifetime).max(1),
                first_timeout: Duration::from_millis(config.bindack_timeout_first_reg_ms.into()),
                retry_timeout: Duration::from_millis(config.bindack_timeout_rereg_ms.into()),
            },
            (seed >> 8) as u16,
        );
        let home_interface = config
            .home_interface
            .clone()
            .or_else(|| links.first().map(|l| l.name.clone()))
            .ok_or_else(|| anyhow!("no interface for the home link"))?;
        let mut me = Self {
            bul,
            links,
            home_interface,
            sender: PacketSender::new()?,
            mh_sender: MhSender::new()?,
            ndisc: Ndisc::new()?,
            kernel: HomeLink::new()?,
            stats: SignallingStats::default(),
            hoa_on_lo: None,
            config,
        };
        // The HoA lives on the loopback too, so packets for it (decapsulated, or the BA) are
        // delivered whichever link is up — applications keep their sockets across moves.
        let lo = system::ifindex("lo")?;
        if me
            .kernel
            .add_address(lo, me.config.home_address, 128)
            .await?
        {
            me.hoa_on_lo = Some((lo, me.config.home_address));
        }
        me.movement(bindings, now).await;
        Ok(me)
    }

    pub fn bul(&self) -> &MobileNode {
        &self.bul
    }

    /// The interface bindings are made on (the first served).
    fn home_ifindex(&self) -> u32 {
        self.links.first().map_or(0, |l| l.ifindex)
    }

    pub fn stats(&self) -> SignallingStats {
        self.stats
    }

    fn home_link(&self) -> Option<&Served> {
        self.links.iter().find(|s| s.name == self.home_interface)
    }

    /// Movement detection (RFC 6275 §11.5): where the addresses and links say we are.
    fn detect_location(&self) -> Location {
        let c = &self.config;
        let mut candidates = Vec::new();
        for s in &self.links {
            let up = std::fs::read_to_string(format!("/sys/class/net/{}/operstate", s.name))
                .map(|o| matches!(o.trim(), "up" | "unknown"))
                .unwrap_or(false);
            if !up {
                continue;
            }
            let addrs = system::ipv6_addresses(&s.name).unwrap_or_default();
            if s.name == self.home_interface && addrs.iter().any(|a| a.addr == c.home_address) {
                return Location::Home;
            }
            for a in addrs {
                if is_global_unicast(&a.addr)
                    && !system::prefix_contains(c.home_address, c.home_prefix_len, a.addr)
                {
                    candidates.push(a.addr);
                }
            }
        }
        match self.bul.location {
            Location::Away(coa) if candidates.contains(&coa) => Location::Away(coa),
            _ => candidates
                .first()
                .map(|&c| Location::Away(c))
                .unwrap_or(Location::Detached),
        }
    }

    /// Links, routes or addresses changed: have we moved?
    pub async fn movement(&mut self, bindings: &mut Bindings, now: Instant) {
        let location = self.detect_location();
        if self.bul.location != location {
            tracing::info!(location = %location, "movement detected");
        }
        let actions = self.bul.moved(location, now);
        self.run(actions, bindings, now).await;
    }

    pub fn set_links(&mut self, links: Vec<Served>) {
        self.links = links;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bul.next_deadline()
    }

    pub async fn handle_timeout(&mut self, bindings: &mut Bindings, now: Instant) {
        let actions = self.bul.on_timer(now);
        self.run(actions, bindings, now).await;
    }

    async fn run(&mut self, actions: Vec<Action>, bindings: &mut Bindings, now: Instant) {
        for a in actions {
            if let Err(e) = self.action(a.clone(), bindings, now).await {
                tracing::error!(action = %a, error = %format!("{e:#}"), "mobile node action failed");
            }
        }
    }

    async fn action(
        &mut self,
        action: Action,
        bindings: &mut Bindings,
        now: Instant,
    ) -> anyhow::Result<()> {
        let (hoa, ha) = (self.config.home_address, self.config.home_agent);
        match action {
            Action::InstallBinding { coa } => {
                let home_ifindex = self.home_ifindex();
                bindings
                    .apply(
                        Op::Put(BindingSpec {
                            hoa,
                            coa,
                            ha_address: ha,
                            home_ifindex,
                            sequence: 0,
                            lifetime: None,
                            flags: 0,
                            prefixes: vec![],
                            origin: Origin::Registered,
                        }),
                        now,
                    )
                    .await?;
            }
            Action::RemoveBinding => match bindings.apply(Op::Remove(hoa), now).await {
                Ok(_) | Err(ApplyError::NotBound(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Action::SendBu {
                coa,
                sequence,
                lifetime_units,
            } => {
                let protected = bindings.ipsec_signalling(&hoa);
                // With IPsec the BU goes through xfrm (ESP transport from the HoA, RFC 3776
                // §3.1) and the TC program adds the Home Address option and the CoA.
                let sent = if protected {
                    mobility::bu_message(hoa, ha, sequence, lifetime_units)
                        .and_then(|m| self.mh_sender.send(&m, hoa, ha, coa != hoa))
                } else {
                    mobility::bu_packet(hoa, coa, ha, sequence, lifetime_units)
                        .and_then(|p| Ok(self.sender.send(&p, ha, 0)?))
                };
                if let Err(e) = sent {
                    // Typically: the link is up but its default route is not there yet.
                    // Try again shortly rather than after a whole back-off period.
                    self.bul.send_failed(now);
                    return Err(e);
                }
                self.stats.bu_sent += 1;
                tracing::info!(%coa, sequence, lifetime_s = u32::from(lifetime_units) * 4, "binding update sent");
            }
            Action::SolicitHomeAgent => {
                if let Some(s) = self.home_link() {
                    self.ndisc.solicit_unspecified(s.ifindex, ha)?;
                }
            }
            Action::AdvertiseHome => {
                if let Some(s) = self.home_link() {
                    self.ndisc.advertise(s.ifindex, hoa, hoa, s.mac)?;
                }
            }
        }
        Ok(())
    }

    /// A Binding Acknowledgement (the data plane already undid its RH2), a Binding Refresh
    /// Request or a Binding Error from the home agent.
    pub async fn on_mh(&mut self, rx: Received, bindings: &mut Bindings, now: Instant) {
        let Ok(parsed) = mh::MobilityHeader::parse(&rx.data) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        if rx.src != self.config.home_agent {
            return;
        }
        let ba = match parsed.message {
            mh::Message::BindingAck(ba) => ba,
            mh::Message::BindingRefreshRequest(_) => {
                tracing::info!("the home agent asks for a binding refresh");
                let actions = self.bul.on_brr(now);
                self.run(actions, bindings, now).await;
                return;
            }
            mh::Message::BindingError(be) => {
                tracing::warn!(
                    status = be.status,
                    home_address = %Ipv6Addr::from(be.home_address),
                    "binding error from the home agent"
                );
                let actions = self.bul.on_be(be.status, now);
                self.run(actions, bindings, now).await;
                return;
            }
            _ => {
                self.stats.dropped_not_bu += 1;
                return;
            }
        };
        let refresh = ba.options.iter().find_map(|o| match o {
            Ok(mh::MobilityOption::BindingRefreshAdvice { interval_units }) => Some(interval_units),
            _ => None,
        });
        match ba.status {
            0 | 1 => tracing::info!(
                seq = ba.sequence,
                lifetime_s = ba.lifetime_secs(),
                "binding acknowledged"
            ),
            s => tracing::warn!(
                status = s,
                seq = ba.sequence,
                "the home agent refused the binding update"
            ),
        }
        let actions = self
            .bul
            .on_ba(ba.status, ba.sequence, ba.lifetime_units, refresh, now);
        self.run(actions, bindings, now).await;
    }

    /// The operator's static binding (`hagent binding add`): a tunnel to the home agent from
    /// `coa`.
    pub async fn binding_add(
        &self,
        hoa: Ipv6Addr,
        coa: Ipv6Addr,
        lifetime: Option<Duration>,
        prefixes: Vec<(Ipv6Addr, u8)>,
        bindings: &mut Bindings,
        now: Instant,
    ) -> anyhow::Result<serde_json::Value> {
        for (what, a) in [("home address", hoa), ("care-of address", coa)] {
            if !is_global_unicast(&a) {
                bail!("{what} {a} is not a global unicast address");
            }
        }
        if !prefixes.is_empty() {
            bail!("a mobile node routes no mobile network prefixes");
        }
        let spec = BindingSpec {
            hoa,
            coa,
            ha_address: self.config.home_agent,
            home_ifindex: self.home_ifindex(),
            sequence: 0,
            lifetime,
            flags: 0,
            prefixes,
            origin: Origin::Static,
        };
        match bindings.apply(Op::Put(spec), now).await {
            Ok(_) => Ok(serde_json::to_value(bindings.view(&hoa, now)?)?),
            Err(ApplyError::Full { capacity }) => {
                bail!("the binding cache is full ({capacity} bindings)")
            }
            Err(e) => Err(anyhow!(e)),
        }
    }

    /// The operator removes a binding (`hagent binding del`).
    pub async fn binding_del(
        &self,
        hoa: Ipv6Addr,
        bindings: &mut Bindings,
        now: Instant,
    ) -> anyhow::Result<serde_json::Value> {
        bindings.apply(Op::Remove(hoa), now).await?;
        Ok(serde_json::json!({ "removed": hoa }))
    }

    /// A binding's lifetime ran out (a static one with `--lifetime`).
    pub async fn on_expired(&mut self, hoa: Ipv6Addr, bindings: &mut Bindings, now: Instant) {
        if let Err(e) = bindings.apply(Op::Remove(hoa), now).await {
            tracing::warn!(%hoa, error = %e, "removing an expired binding failed");
        }
    }

    /// Removes what the role added (the HoA on the loopback).
    pub async fn shutdown(&mut self) {
        if let Some((lo, hoa)) = self.hoa_on_lo.take()
            && let Err(e) = self.kernel.del_address(lo, hoa, 128).await
        {
            tracing::warn!(error = %format!("{e:#}"), "removing the HoA from lo failed");
        }
    }
}
