//! `hagent run`: one event loop owns the binding cache, the data plane and the kernel state
//! (no locks, no thread per request). Control requests, binding expiry and routing changes
//! are events; SIGINT/SIGTERM end the loop, which then removes everything it installed.

use std::{
    net::Ipv6Addr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use ha_common::abi::BindingEntry;
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use std::collections::{HashMap, HashSet};

use ha_common::mh;

use crate::{
    binding::{Binding, BindingCache, BindingSpec, Change, Origin},
    config::{Config, Role, is_global_unicast},
    control::{Command, ControlSocket, Request},
    dataplane::{self, Dataplane, DataplaneOptions},
    homelink::{HomeLink, KernelBinding},
    ipsec::{self, Ipsec, Side},
    mobile_node::{Action as MnAction, Location, MnSettings, MobileNode},
    mobility::{self, MhSender, MhSocket, PacketSender, Rejected, SignallingStats},
    ndisc::Ndisc,
    punt::{self, PuntStats, TunnelSender},
    registrar, system,
};

/// An interface the node serves.
#[derive(Clone, Debug)]
pub struct Served {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Its IPv6 addresses (refreshed on address events): the home prefixes, and the sources
    /// for Neighbor Advertisements.
    pub addresses: Vec<system::InterfaceAddress>,
}

/// Things that happen to the daemon, handled one at a time by its event loop.
pub enum Event {
    /// A Mobility Header arrived.
    Mh(crate::sock::Received),
    /// The kernel's side of a new binding is installed (or failed).
    KernelDone(Box<KernelDone>),
    /// Duplicate Address Detection for a new binding finished.
    DadDone {
        bu: registrar::BindingUpdate,
        decision: registrar::Decision,
        ifindex: u32,
        unique: anyhow::Result<bool>,
    },
    /// The temporary route for an ESP-protected refusal is in place (or failed).
    RefusalRouted(Box<RefusalRouted>),
    /// Time to forget the CoA of a refusal sent without a route of ours (`HA_SIGNAL_COA`).
    SignalCoaDone { hoa: Ipv6Addr, coa: Ipv6Addr },
}

/// An ESP-protected BA refusing a mobile node that has no binding, waiting for its route.
pub struct RefusalRouted {
    bu: registrar::BindingUpdate,
    fields: mh::BaFields,
    refresh_units: Option<u16>,
    kb: KernelBinding,
    result: anyhow::Result<()>,
}

/// The daemon's state, owned by the event loop.
pub struct Daemon {
    config: Config,
    dataplane: Dataplane,
    cache: BindingCache,
    homelink: HomeLink,
    served: Vec<Served>,
    punt_stats: Arc<Mutex<PuntStats>>,
    /// Signalling sockets (both roles).
    signalling: Option<Signalling>,
    /// The binding update list (mobile node role).
    mn: Option<MobileNode>,
    /// The HoA we put on the loopback (removed at shutdown).
    hoa_on_lo: Option<(u32, Ipv6Addr)>,
    /// IPsec policies we installed (removed at shutdown).
    ipsec: Option<Ipsec>,
    /// Per binding: the tunnel-mode IPsec policies that follow its CoA.
    ipsec_tunnels: HashMap<Ipv6Addr, IpsecTunnel>,
    /// What `HA_SIGNAL_COA` holds: the CoA of the protected refusal in flight per HoA.
    signal_coas: HashMap<Ipv6Addr, Ipv6Addr>,
}

/// The tunnel-mode IPsec policies of one binding and the CoA they point at now.
struct IpsecTunnel {
    policies: Vec<ipsec::Policy>,
    coa: Ipv6Addr,
    /// The mobile network prefixes the policies cover besides the HoA.
    prefixes: Vec<(Ipv6Addr, u8)>,
}

/// The kernel's side of a new binding is installed (or failed): what to finish.
pub struct KernelDone {
    bu: registrar::BindingUpdate,
    spec: BindingSpec,
    change: Change,
    kb: KernelBinding,
    ba: Accepted,
    result: anyhow::Result<()>,
}

/// The BA to send once a registration is in place.
#[derive(Clone, Copy, Debug)]
pub struct Accepted {
    lifetime_units: u16,
    refresh_units: Option<u16>,
    flags: u8,
}

/// What home registration needs besides the cache.
struct Signalling {
    sender: PacketSender,
    /// Signalling that must pass xfrm (`UseMnHaIPsec`).
    mh_sender: MhSender,
    ndisc: Ndisc,
    stats: SignallingStats,
    /// HoAs whose DAD or kernel installation is running: further BUs for them wait for its
    /// outcome (the MN retransmits).
    pending: HashSet<Ipv6Addr>,
    /// Last Binding Error per destination (rate limit, RFC 6275 §9.3.3).
    last_be: HashMap<Ipv6Addr, Instant>,
    events: mpsc::UnboundedSender<Event>,
}

impl Daemon {
    /// Loads and attaches the data plane and prepares the home links. Nothing is left behind
    /// if this fails: the data plane detaches when dropped.
    pub async fn start(mut config: Config) -> anyhow::Result<Self> {
        system::require_root()?;
        system::require_btf()?;
        // Check every interface before touching the kernel: a typo must not leave a
        // half-configured node behind.
        let mut served = Vec::new();
        for name in &config.dataplane.interfaces {
            let ifindex = system::ifindex(name).context("dataplane.interfaces")?;
            served.push(Served {
                name: name.clone(),
                ifindex,
                mac: system::mac_address(name)?,
                mtu: system::mtu(name)?,
                addresses: system::ipv6_addresses(name)?,
            });
        }
        if config.role == Role::HomeAgent && config.home_agent.addresses.is_empty() {
            // As UMIP: the HA's addresses are the global ones on its home-link interfaces.
            for s in &served {
                for a in system::ipv6_addresses(&s.name)? {
                    if is_global_unicast(&a.addr) && !config.home_agent.addresses.contains(&a.addr)
                    {
                        config.home_agent.addresses.push(a.addr);
                    }
                }
            }
            if config.home_agent.addresses.is_empty() {
                bail!(
                    "no home agent address: the served interfaces ({}) have no global IPv6 \
                     address; configure one, or list home_agent.addresses",
                    config.dataplane.interfaces.join(", ")
                );
            }
            tracing::info!(addresses = ?config.home_agent.addresses, "home agent addresses from the interfaces");
        }
        let d = &config.dataplane;
        let options = DataplaneOptions {
            role: match config.role {
                Role::HomeAgent => dataplane::Role::HomeAgent,
                Role::MobileNode => dataplane::Role::MobileNode,
            },
            max_bindings: d.max_bindings,
            max_prefixes: d.max_prefixes,
            outer_hop_limit: d.outer_hop_limit,
            nexthop_cache: d.nexthop_cache,
            icmp_rate: d.icmp_rate,
            max_dad: 1024,
            bench_restore: false,
        };
        let mut dataplane = Dataplane::load(&options)?;
        for s in &served {
            dataplane.attach(&s.name, d.xdp_mode)?;
        }
        if config.role == Role::HomeAgent {
            for a in &config.home_agent.addresses {
                dataplane.add_local_address(*a)?;
                let on_link = served.iter().any(|s| {
                    system::ipv6_addresses(&s.name).is_ok_and(|v| v.iter().any(|x| x.addr == *a))
                });
                if !on_link {
                    tracing::warn!(address = %a, "home agent address is not configured on any served interface");
                }
            }
            for s in &served {
                // Answer NS for bound HoAs at once (proxy_delay defaults to 0.8 s of random
                // delay for proxied answers).
                system::set_sysctl(&["net", "ipv6", "conf", &s.name, "proxy_ndp"], "1")?;
                system::set_sysctl(&["net", "ipv6", "neigh", &s.name, "proxy_delay"], "0")?;
                if system::sysctl(&["net", "ipv6", "conf", &s.name, "forwarding"])? != "1" {
                    tracing::warn!(
                        interface = %s.name,
                        "IPv6 forwarding is off on this interface: the kernel will neither proxy \
                         ND for home addresses nor forward (set net.ipv6.conf.{}.forwarding=1)",
                        s.name
                    );
                }
            }
        }
        let homelink = HomeLink::new()?;
        let stale = homelink.flush_stale_routes().await?;
        if stale > 0 {
            tracing::info!(routes = stale, "removed routes left by an earlier hagent");
        }
        let ipsec = if config.ipsec.use_mn_ha_ipsec {
            Some(Self::start_ipsec(&config).await?)
        } else {
            None
        };
        Ok(Self {
            cache: BindingCache::new(d.max_bindings),
            config,
            dataplane,
            homelink,
            served,
            punt_stats: Arc::default(),
            signalling: None,
            mn: None,
            hoa_on_lo: None,
            ipsec,
            ipsec_tunnels: HashMap::new(),
            signal_coas: HashMap::new(),
        })
    }

    /// IPsec policies from the `IPsecPolicySet`s, then a check that the kernel can do ESP at
    /// all. A failure removes what was installed: no half-configured node.
    async fn start_ipsec(config: &Config) -> anyhow::Result<Ipsec> {
        let mut ipsec = Ipsec::new()?;
        let side = Side::of(config.role);
        let mut policies = ipsec::nd_bypass_policies();
        for set in &config.ipsec.sets {
            policies.extend(ipsec::transport_policies(set, side)?);
        }
        let mut result = Ok(());
        for p in &policies {
            if let Err(e) = ipsec.install(p).await {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            result = ipsec.probe_esp().await;
        }
        if result.is_ok() {
            for sa in &config.ipsec.manual_sas {
                if let Err(e) = ipsec.install_sa(sa).await {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok()
            && let Some(path) = &config.ipsec.sa_file
        {
            match crate::config::setkey::parse_file(path) {
                Ok(f) => {
                    for w in &f.warnings {
                        tracing::warn!("{w}");
                    }
                    for sa in &f.sas {
                        if let Err(e) = ipsec.install_sa(sa).await {
                            result = Err(e);
                            break;
                        }
                    }
                }
                Err(e) => result = Err(anyhow!("{e}")),
            }
        }
        if let Err(e) = result {
            if let Err(cleanup) = ipsec.remove_all().await {
                tracing::error!(error = %format!("{cleanup:#}"), "removing the IPsec policies again failed");
            }
            return Err(e.context("UseMnHaIPsec is enabled"));
        }
        tracing::info!(
            policies = ipsec.installed().len(),
            "IPsec policies installed"
        );
        Ok(ipsec)
    }

    /// Opens the signalling sockets (home agent role); events go to `events`.
    fn start_signalling(
        &mut self,
        events: mpsc::UnboundedSender<Event>,
    ) -> anyhow::Result<MhSocket> {
        let mh = MhSocket::new()?;
        self.signalling = Some(Signalling {
            sender: PacketSender::new()?,
            mh_sender: MhSender::new()?,
            ndisc: Ndisc::start()?,
            stats: SignallingStats::default(),
            pending: HashSet::new(),
            last_be: HashMap::new(),
            events,
        });
        Ok(mh)
    }

    /// Mobile node role: the binding update list, starting from where the node is now.
    async fn start_mobile_node(&mut self) -> anyhow::Result<()> {
        let c = self
            .config
            .mobile_node
            .clone()
            .ok_or_else(|| anyhow!("no [mobile_node] configuration"))?;
        // A sequence number that differs across restarts (the HA may remember the old one;
        // a 135 resynchronises in any case).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.mn = Some(MobileNode::new(
            MnSettings {
                hoa: c.home_address,
                ha: c.home_agent,
                lifetime_units: mh::secs_to_lifetime_units(c.binding_lifetime).max(1),
                first_timeout: Duration::from_millis(1500),
                retry_timeout: Duration::from_secs(1),
            },
            (seed >> 8) as u16,
        ));
        // The HoA lives on the loopback too, so packets for it (decapsulated, or the BA) are
        // delivered whichever link is up — applications keep their sockets across moves.
        let lo = system::ifindex("lo")?;
        if self.homelink.add_address(lo, c.home_address, 128).await? {
            self.hoa_on_lo = Some((lo, c.home_address));
        }
        self.movement().await;
        Ok(())
    }

    /// Mobile node: the name of its home link — `mobile_node.home_interface`, else the
    /// first data-plane interface.
    fn mn_home_interface(&self) -> &str {
        self.config
            .mobile_node
            .as_ref()
            .and_then(|c| c.home_interface.as_deref())
            .unwrap_or(&self.config.dataplane.interfaces[0])
    }

    /// Mobile node: the served interface that is its home link.
    fn mn_home_link(&self) -> Option<&Served> {
        let name = self.mn_home_interface();
        self.served.iter().find(|s| s.name == name)
    }

    /// Movement detection (RFC 6275 §11.5): where the addresses and links say we are.
    fn detect_location(&self) -> Location {
        let Some(c) = self.config.mobile_node.as_ref() else {
            return Location::Detached;
        };
        let home_if = self.mn_home_interface();
        let current = self.mn.as_ref().map(|m| m.location);
        let mut candidates = Vec::new();
        for s in &self.served {
            let up = std::fs::read_to_string(format!("/sys/class/net/{}/operstate", s.name))
                .map(|o| matches!(o.trim(), "up" | "unknown"))
                .unwrap_or(false);
            if !up {
                continue;
            }
            let addrs = system::ipv6_addresses(&s.name).unwrap_or_default();
            if s.name == home_if && addrs.iter().any(|a| a.addr == c.home_address) {
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
        match current {
            Some(Location::Away(coa)) if candidates.contains(&coa) => Location::Away(coa),
            _ => candidates
                .first()
                .map(|&c| Location::Away(c))
                .unwrap_or(Location::Detached),
        }
    }

    async fn movement(&mut self) {
        let location = self.detect_location();
        let Some(mn) = self.mn.as_mut() else {
            return;
        };
        if mn.location != location {
            tracing::info!(?location, "movement detected");
        }
        let actions = mn.moved(location, Instant::now());
        self.mn_actions(actions).await;
    }

    async fn mn_actions(&mut self, actions: Vec<MnAction>) {
        for a in actions {
            if let Err(e) = self.mn_action(a.clone()).await {
                tracing::error!(action = ?a, error = %format!("{e:#}"), "mobile node action failed");
            }
        }
    }

    async fn mn_action(&mut self, action: MnAction) -> anyhow::Result<()> {
        let (hoa, ha) = {
            let mn = self.mn.as_ref().expect("mobile node");
            (mn.settings().hoa, mn.settings().ha)
        };
        match action {
            MnAction::InstallBinding { coa } => {
                let previous = self.cache.get(&hoa).map(|b| b.spec.coa);
                self.upsert_binding(BindingSpec {
                    hoa,
                    coa,
                    ha_address: ha,
                    home_ifindex: self.served[0].ifindex,
                    sequence: 0,
                    lifetime: None,
                    flags: 0,
                    prefixes: vec![],
                    origin: Origin::Registered,
                })
                .await?;
                if let Some(old) = previous.filter(|o| *o != coa) {
                    self.dataplane.remove_local_address(old)?;
                }
            }
            MnAction::RemoveBinding => {
                self.remove_binding(&hoa).await?;
            }
            MnAction::SendBu {
                coa,
                sequence,
                lifetime_units,
            } => {
                let protected = self.ipsec_signalling(&hoa);
                let sig = self.signalling.as_mut().expect("signalling");
                // With IPsec the BU goes through xfrm (ESP transport from the HoA, RFC 3776
                // §3.1) and the TC program adds the Home Address option and the CoA.
                let sent = if protected {
                    mobility::bu_message(hoa, ha, sequence, lifetime_units)
                        .and_then(|m| sig.mh_sender.send(&m, hoa, ha, coa != hoa))
                } else {
                    mobility::bu_packet(hoa, coa, ha, sequence, lifetime_units)
                        .and_then(|p| Ok(sig.sender.send(&p, ha, 0)?))
                };
                if let Err(e) = sent {
                    // Typically: the link is up but its default route is not there yet.
                    // Try again shortly rather than after a whole back-off period.
                    if let Some(mn) = self.mn.as_mut() {
                        mn.send_failed(Instant::now());
                    }
                    return Err(e);
                }
                sig.stats.bu_sent += 1;
                tracing::info!(%coa, sequence, lifetime_s = u32::from(lifetime_units) * 4, "binding update sent");
            }
            MnAction::SolicitHomeAgent => {
                if let Some(s) = self.mn_home_link()
                    && let Some(sig) = self.signalling.as_ref()
                {
                    sig.ndisc.solicit_unspecified(s.ifindex, ha)?;
                }
            }
            MnAction::AdvertiseHome => {
                if let Some(s) = self.mn_home_link()
                    && let Some(sig) = self.signalling.as_ref()
                {
                    sig.ndisc.advertise(s.ifindex, hoa, hoa, s.mac)?;
                }
            }
        }
        Ok(())
    }

    /// Mobile node: a Binding Acknowledgement (the data plane already undid its RH2).
    async fn on_ba(&mut self, rx: crate::sock::Received) {
        let Some(mn) = self.mn.as_mut() else {
            return;
        };
        let Ok(parsed) = mh::MobilityHeader::parse(&rx.data) else {
            return;
        };
        let mh::Message::BindingAck(ba) = parsed.message else {
            return;
        };
        if rx.src != mn.settings().ha {
            return;
        }
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
        let actions = mn.on_ba(
            ba.status,
            ba.sequence,
            ba.lifetime_units,
            refresh,
            Instant::now(),
        );
        self.mn_actions(actions).await;
    }

    fn refresh_addresses(&mut self) {
        for s in &mut self.served {
            if let Ok(a) = system::ipv6_addresses(&s.name) {
                s.addresses = a;
            }
        }
    }

    fn handle_stats(&self) -> anyhow::Result<serde_json::Value> {
        Ok(json!({
            "counters": self.dataplane.counters()?,
            "attachments": self.dataplane.attachments(),
            "bindings": self.cache.len(),
            "slow_path": *self.punt_stats.lock().map_err(|_| anyhow!("stats lock poisoned"))?,
            "signalling": self.signalling.as_ref().map(|s| s.stats),
            "mobile_node": self.mn.as_ref(),
        }))
    }

    fn binding_json(&self, b: &Binding, now: Instant) -> anyhow::Result<serde_json::Value> {
        let c = self.dataplane.binding_counters(b.id)?;
        let s = &b.spec;
        Ok(json!({
            "hoa": s.hoa,
            "coa": s.coa,
            "ha_address": s.ha_address,
            "sequence": s.sequence,
            "lifetime_remaining_s": b.lifetime_remaining(now),
            "origin": s.origin,
            "id": b.id,
            "interface": self.served.iter().find(|x| x.ifindex == s.home_ifindex).map(|x| x.name.clone()),
            "prefixes": s.prefixes.iter().map(|(p, l)| format!("{p}/{l}")).collect::<Vec<_>>(),
            "packets_tunnelled": c.tunnelled_packets,
            "bytes_tunnelled": c.tunnelled_bytes,
            "packets_reverse": c.reverse_packets,
            "bytes_reverse": c.reverse_bytes,
        }))
    }

    fn handle_bindings(&self) -> anyhow::Result<serde_json::Value> {
        let now = Instant::now();
        let mut list: Vec<&Binding> = self.cache.iter().collect();
        list.sort_by_key(|b| b.spec.hoa);
        Ok(serde_json::Value::Array(
            list.into_iter()
                .map(|b| self.binding_json(b, now))
                .collect::<anyhow::Result<_>>()?,
        ))
    }

    /// The served interface whose addresses' prefix contains `hoa`, with the HA address to
    /// use as tunnel endpoint on it.
    fn home_link_for(&self, hoa: &Ipv6Addr) -> anyhow::Result<(&Served, Ipv6Addr)> {
        let extra: Vec<(Ipv6Addr, u8)> = self
            .config
            .home_agent
            .home_prefixes
            .iter()
            .filter_map(|p| crate::config::parse_prefix(p).ok())
            .collect();
        for s in &self.served {
            let addrs = &s.addresses;
            let on_link = addrs
                .iter()
                .any(|a| a.prefix_len < 128 && is_global_unicast(&a.addr) && a.covers(hoa))
                || (self.served.len() == 1
                    && extra
                        .iter()
                        .any(|&(p, l)| system::prefix_contains(p, l, *hoa)));
            if on_link {
                let ha = self
                    .config
                    .home_agent
                    .addresses
                    .iter()
                    .find(|ha| addrs.iter().any(|a| a.addr == **ha))
                    .or(self.config.home_agent.addresses.first())
                    .copied()
                    .ok_or_else(|| anyhow!("no home agent address configured"))?;
                return Ok((s, ha));
            }
        }
        bail!(
            "{hoa} is not a home address here: no prefix on the served interfaces ({}) contains it",
            self.served
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Whether signalling for `hoa` must be ESP-protected (an `IPsecPolicySet` lists it).
    fn ipsec_signalling(&self, hoa: &Ipv6Addr) -> bool {
        self.ipsec.is_some()
            && self
                .config
                .ipsec
                .sets
                .iter()
                .any(|s| s.home_addresses.iter().any(|(a, _)| a == hoa))
    }

    /// Whether `hoa`'s payload goes through the kernel's xfrm (`TunnelPayload`) rather than
    /// the XDP fast path.
    fn ipsec_payload(&self, hoa: &Ipv6Addr) -> bool {
        self.ipsec.is_some()
            && self
                .config
                .ipsec
                .sets
                .iter()
                .any(|s| ipsec::protects_payload(s, *hoa))
    }

    /// Points `hoa`'s tunnel-mode IPsec policies (and SAs) at `to` = (CoA, mobile network
    /// prefixes): installs them (at-home endpoints) and migrates them for a new binding,
    /// migrates them for a new CoA (re-installs them when the prefixes changed), and with
    /// `None` migrates them back home and removes them. Nothing to do without tunnel types.
    async fn ipsec_follow(
        &mut self,
        hoa: Ipv6Addr,
        to: Option<(Ipv6Addr, &[(Ipv6Addr, u8)])>,
    ) -> anyhow::Result<()> {
        if self.ipsec.is_none() {
            return Ok(());
        }
        let side = Side::of(self.config.role);
        let current = self.ipsec_tunnels.remove(&hoa);
        let x = self.ipsec.as_mut().expect("checked");
        match (current, to) {
            (None, None) => Ok(()),
            (None, Some((coa, prefixes))) => {
                let mut policies = Vec::new();
                for set in &self.config.ipsec.sets {
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
                        self.ipsec_tunnels.insert(
                            hoa,
                            IpsecTunnel {
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
                self.ipsec_tunnels.insert(hoa, t);
                Box::pin(self.ipsec_follow(hoa, None)).await?;
                Box::pin(self.ipsec_follow(hoa, Some((coa, prefixes)))).await
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
                self.ipsec_tunnels.insert(hoa, t);
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

    /// After a failed change of `hoa`'s binding (cache and maps already rolled back): make
    /// its IPsec tunnel agree with the cache again — the previous CoA, or none.
    async fn restore_ipsec(&mut self, hoa: Ipv6Addr) {
        let target = self
            .cache
            .get(&hoa)
            .map(|b| (b.spec.coa, b.spec.prefixes.clone()));
        let result = match &target {
            Some((coa, prefixes)) => self.ipsec_follow(hoa, Some((*coa, prefixes))).await,
            None => self.ipsec_follow(hoa, None).await,
        };
        if let Err(e) = result {
            tracing::error!(%hoa, error = %format!("{e:#}"), "restoring the IPsec tunnel policies failed");
        }
    }

    /// Adds or updates a binding everywhere: cache, data plane, kernel.
    pub async fn upsert_binding(&mut self, spec: BindingSpec) -> anyhow::Result<Change> {
        // IPsec first: once the map says "leave it to xfrm", the policies must be there.
        self.ipsec_follow(spec.hoa, Some((spec.coa, &spec.prefixes)))
            .await?;
        let (change, kernel) = match self.upsert_maps(spec.clone()) {
            Ok(x) => x,
            Err(e) => {
                self.restore_ipsec(spec.hoa).await;
                return Err(e);
            }
        };
        if let Some(kb) = kernel
            && let Err(e) = self.homelink.install(&kb).await
        {
            self.rollback(&spec, &change);
            self.restore_ipsec(spec.hoa).await;
            if let Change::Created { .. } = change {
                let _ = self.homelink.remove(&kb).await;
            }
            return Err(e);
        }
        Ok(change)
    }

    /// The cache and the maps (synchronous). Returns the change and, when the kernel's side
    /// must be (re)installed, what to install; on failure nothing has changed.
    fn upsert_maps(
        &mut self,
        spec: BindingSpec,
    ) -> anyhow::Result<(Change, Option<KernelBinding>)> {
        let change = self.cache.upsert(spec.clone(), Instant::now())?;
        if let Err(e) = self.apply_maps(&spec, &change) {
            self.rollback(&spec, &change);
            return Err(e);
        }
        // The kernel's side (proxy, neighbour, routes) does not depend on the CoA: a refresh
        // or a move leaves it alone.
        let kernel_unchanged = matches!(&change, Change::Updated { previous, .. }
            if previous.home_ifindex == spec.home_ifindex && previous.prefixes == spec.prefixes);
        let kernel = (self.config.role == Role::HomeAgent && !kernel_unchanged)
            .then(|| self.kernel_binding(&spec));
        Ok((change, kernel))
    }

    /// Undoes `upsert_maps` (cache and maps) after a failure.
    fn rollback(&mut self, spec: &BindingSpec, change: &Change) {
        match change {
            Change::Created { .. } => {
                self.cache.remove(&spec.hoa);
                let _ = self.dataplane.remove_binding(spec.hoa);
                for &(p, l) in &spec.prefixes {
                    let _ = self.dataplane.remove_prefix(p, l);
                }
            }
            Change::Updated { previous, id } => {
                let _ = self.cache.upsert(previous.clone(), Instant::now());
                let _ = self
                    .dataplane
                    .set_binding(previous.hoa, &self.entry(previous, *id));
            }
        }
    }

    fn apply_maps(&mut self, spec: &BindingSpec, change: &Change) -> anyhow::Result<()> {
        let id = match change {
            Change::Created { id } | Change::Updated { id, .. } => *id,
        };
        if let Change::Created { .. } = change {
            self.dataplane.reset_binding_counters(id)?;
        }
        if self.config.role == Role::MobileNode {
            // The MN terminates the tunnel at its care-of address.
            self.dataplane.add_local_address(spec.coa)?;
        }
        // In place: a CoA change rewrites the entry, so the HoA is never unforwarded.
        self.dataplane
            .set_binding(spec.hoa, &self.entry(spec, id))?;
        if let Change::Updated { previous, .. } = change {
            for &(p, l) in &previous.prefixes {
                if !spec.prefixes.contains(&(p, l)) {
                    self.dataplane.remove_prefix(p, l)?;
                }
            }
        }
        for &(p, l) in &spec.prefixes {
            self.dataplane.set_prefix(p, l, &self.entry(spec, id))?;
        }
        Ok(())
    }

    fn entry(&self, spec: &BindingSpec, id: u32) -> BindingEntry {
        let (local, remote) = match self.config.role {
            Role::HomeAgent => (spec.ha_address, spec.coa),
            Role::MobileNode => (spec.coa, spec.ha_address),
        };
        let ipsec = if self.ipsec_payload(&spec.hoa) {
            ha_common::abi::BINDING_F_IPSEC_PAYLOAD
        } else {
            0
        };
        BindingEntry {
            local: local.octets(),
            remote: remote.octets(),
            flags: spec.flags | ipsec,
            binding_id: id,
            home_ifindex: spec.home_ifindex,
            _pad: 0,
        }
    }

    fn kernel_binding(&self, spec: &BindingSpec) -> KernelBinding {
        let served = self.served.iter().find(|s| s.ifindex == spec.home_ifindex);
        KernelBinding {
            hoa: spec.hoa,
            ifindex: spec.home_ifindex,
            mac: served.map(|s| s.mac).unwrap_or_default(),
            mtu: ha_ebpf_tunnel_mtu(served.map(|s| s.mtu).unwrap_or(1500)),
            prefixes: spec.prefixes.clone(),
            proxy: self.config.role == Role::HomeAgent,
        }
    }

    /// Removes a binding everywhere.
    pub async fn remove_binding(&mut self, hoa: &Ipv6Addr) -> anyhow::Result<Option<Binding>> {
        let Some(b) = self.cache.remove(hoa) else {
            return Ok(None);
        };
        self.dataplane.remove_binding(*hoa)?;
        if let Err(e) = self.ipsec_follow(*hoa, None).await {
            tracing::error!(%hoa, error = %format!("{e:#}"), "removing the binding's IPsec tunnel policies failed");
        }
        for &(p, l) in &b.spec.prefixes {
            self.dataplane.remove_prefix(p, l)?;
        }
        if self.config.role == Role::HomeAgent {
            self.homelink.remove(&self.kernel_binding(&b.spec)).await?;
        } else if !self.cache.iter().any(|o| o.spec.coa == b.spec.coa) {
            self.dataplane.remove_local_address(b.spec.coa)?;
        }
        Ok(Some(b))
    }

    async fn handle_binding_add(
        &mut self,
        hoa: &str,
        coa: &str,
        lifetime: Option<u32>,
        prefixes: &[String],
    ) -> anyhow::Result<serde_json::Value> {
        let hoa: Ipv6Addr = hoa
            .parse()
            .map_err(|_| anyhow!("invalid home address {hoa:?}"))?;
        let coa: Ipv6Addr = coa
            .parse()
            .map_err(|_| anyhow!("invalid care-of address {coa:?}"))?;
        for (what, a) in [("home address", hoa), ("care-of address", coa)] {
            if !is_global_unicast(&a) {
                bail!("{what} {a} is not a global unicast address");
            }
        }
        if self.config.home_agent.addresses.contains(&hoa) {
            bail!("{hoa} is a home agent address, not a home address");
        }
        if hoa == coa {
            bail!(
                "care-of address equals the home address: that is a deregistration; use `hagent binding del {hoa}`"
            );
        }
        let mut mnps = Vec::new();
        for p in prefixes {
            let (a, l) = p
                .split_once('/')
                .ok_or_else(|| anyhow!("invalid prefix {p:?}: expected ADDRESS/LENGTH"))?;
            let a: Ipv6Addr = a
                .parse()
                .map_err(|_| anyhow!("invalid prefix {p:?}: bad address"))?;
            let l: u8 = l
                .parse()
                .ok()
                .filter(|l| *l <= 128)
                .ok_or_else(|| anyhow!("invalid prefix {p:?}: length must be 0..=128"))?;
            mnps.push((a, l));
        }
        let lifetime = lifetime.map(|s| Duration::from_secs(s.into()));
        let (ha_address, home_ifindex) = match self.config.role {
            Role::HomeAgent => {
                let (served, ha) = self.home_link_for(&hoa)?;
                (ha, served.ifindex)
            }
            Role::MobileNode => {
                let mn = self
                    .config
                    .mobile_node
                    .as_ref()
                    .ok_or_else(|| anyhow!("no [mobile_node] configuration"))?;
                (mn.home_agent, self.served[0].ifindex)
            }
        };
        let sequence = self.cache.get(&hoa).map(|b| b.spec.sequence).unwrap_or(0);
        let spec = BindingSpec {
            hoa,
            coa,
            ha_address,
            home_ifindex,
            sequence,
            lifetime,
            flags: 0,
            prefixes: mnps,
            origin: Origin::Static,
        };
        let change = self.upsert_binding(spec).await?;
        tracing::info!(%hoa, %coa, ?lifetime, "static binding {}", match change {
            Change::Created { .. } => "added",
            Change::Updated { .. } => "updated",
        });
        let b = self.cache.get(&hoa).expect("just inserted");
        self.binding_json(b, Instant::now())
    }

    async fn handle(&mut self, request: Request) -> anyhow::Result<serde_json::Value> {
        match request {
            Request::Stats => self.handle_stats(),
            Request::Bindings => self.handle_bindings(),
            Request::BindingAdd {
                hoa,
                coa,
                lifetime,
                prefixes,
            } => {
                self.handle_binding_add(&hoa, &coa, lifetime, &prefixes)
                    .await
            }
            Request::BindingDel { hoa } => {
                let addr: Ipv6Addr = hoa
                    .parse()
                    .map_err(|_| anyhow!("invalid home address {hoa:?}"))?;
                match self.remove_binding(&addr).await? {
                    Some(_) => {
                        tracing::info!(hoa = %addr, "binding removed");
                        Ok(json!({ "removed": addr }))
                    }
                    None => bail!("no binding for {addr}"),
                }
            }
        }
    }

    /// A Mobility Header arrived (RFC 6275 §9.2, §9.5.1, §10.3).
    async fn on_mh(&mut self, rx: crate::sock::Received) {
        if self.config.role == Role::MobileNode {
            return self.on_ba(rx).await;
        }
        let Some(sig) = self.signalling.as_mut() else {
            return;
        };
        let bu = match mobility::parse_bu(&rx) {
            Ok(bu) => bu,
            Err(Rejected::BadChecksum) => {
                sig.stats.dropped_bad_checksum += 1;
                return;
            }
            Err(Rejected::Malformed(e)) => {
                sig.stats.dropped_malformed += 1;
                tracing::debug!(src = %rx.src, error = %e, "malformed Mobility Header dropped");
                return;
            }
            Err(Rejected::NotBindingUpdate) => {
                sig.stats.dropped_not_bu += 1;
                return;
            }
            Err(Rejected::UnknownType {
                mh_type,
                reply_to,
                hoa,
            }) => {
                tracing::debug!(%reply_to, mh_type, "unknown MH type: Binding Error status 2");
                self.send_be(rx.dst, reply_to, mh::BE_STATUS_UNRECOGNIZED_MH_TYPE, hoa);
                return;
            }
        };
        sig.stats.bu_received += 1;
        if sig.pending.contains(&bu.hoa) {
            // DAD for this HoA is running; the MN retransmits if it hears nothing.
            return;
        }
        let existing = self.cache.get(&bu.hoa).map(|b| registrar::Existing {
            sequence: b.spec.sequence,
        });
        let home = self.home_link_for(&bu.hoa).ok().map(|(s, _)| s.ifindex);
        let policy = registrar::Policy {
            config: &self.config.home_agent,
            is_home_agent: self.config.role == Role::HomeAgent,
            on_home_link: home.is_some(),
        };
        let decision = registrar::decide(&bu, existing, &policy);
        tracing::debug!(hoa = %bu.hoa, coa = %bu.coa, seq = bu.sequence, ?decision, "binding update");
        match decision {
            registrar::Decision::Ignore => {}
            registrar::Decision::Reject { status, sequence } => {
                tracing::info!(hoa = %bu.hoa, coa = %bu.coa, status, "binding update refused");
                self.send_ba(&bu, status, sequence, 0, None, 0);
            }
            registrar::Decision::Deregister => match self.remove_binding(&bu.hoa).await {
                Ok(_) => {
                    tracing::info!(hoa = %bu.hoa, "deregistered");
                    self.send_ba(&bu, registrar::status::ACCEPTED, bu.sequence, 0, None, 0);
                }
                Err(e) => {
                    tracing::error!(hoa = %bu.hoa, error = %format!("{e:#}"), "deregistration failed");
                    self.send_ba(&bu, registrar::status::UNSPECIFIED, bu.sequence, 0, None, 0);
                }
            },
            registrar::Decision::Register { new: true, .. } if self.config.home_agent.dad => {
                let ifindex = home.expect("on the home link");
                let sig = self.signalling.as_mut().expect("signalling");
                sig.pending.insert(bu.hoa);
                let ndisc = sig.ndisc.clone();
                let events = sig.events.clone();
                tokio::spawn(async move {
                    let unique = ndisc.dad(ifindex, bu.hoa).await;
                    let _ = events.send(Event::DadDone {
                        bu,
                        decision,
                        ifindex,
                        unique,
                    });
                });
            }
            registrar::Decision::Register { .. } => {
                let ifindex = home.expect("on the home link");
                self.register(bu, decision, ifindex).await;
            }
        }
    }

    async fn on_dad_done(
        &mut self,
        bu: registrar::BindingUpdate,
        decision: registrar::Decision,
        ifindex: u32,
        unique: anyhow::Result<bool>,
    ) {
        if let Some(sig) = self.signalling.as_mut() {
            sig.pending.remove(&bu.hoa);
        }
        match unique {
            Ok(true) => self.register(bu, decision, ifindex).await,
            Ok(false) => {
                tracing::warn!(hoa = %bu.hoa, "duplicate address detection failed: the home address is in use on the home link");
                self.send_ba(&bu, registrar::status::DAD_FAILED, bu.sequence, 0, None, 0);
            }
            Err(e) => {
                tracing::error!(hoa = %bu.hoa, error = %format!("{e:#}"), "duplicate address detection could not run");
                self.send_ba(&bu, registrar::status::UNSPECIFIED, bu.sequence, 0, None, 0);
            }
        }
    }

    /// Creates or updates a registered binding and acknowledges it. The kernel's side of a new
    /// binding is installed by a task (netlink round trips would otherwise serialise every new
    /// registration); the BA follows when it is done ([`Event::KernelDone`]).
    async fn register(
        &mut self,
        bu: registrar::BindingUpdate,
        decision: registrar::Decision,
        ifindex: u32,
    ) {
        let registrar::Decision::Register {
            lifetime_units,
            refresh_units,
            prefixes,
            mobile_router,
            ..
        } = decision
        else {
            return;
        };
        let spec = BindingSpec {
            hoa: bu.hoa,
            coa: bu.coa,
            ha_address: bu.ha_address,
            home_ifindex: ifindex,
            sequence: bu.sequence,
            lifetime: Some(Duration::from_secs(u64::from(lifetime_units) * 4)),
            flags: if mobile_router {
                ha_common::abi::BINDING_F_MOBILE_ROUTER
            } else {
                0
            },
            prefixes,
            origin: Origin::Registered,
        };
        let ba = Accepted {
            lifetime_units,
            refresh_units,
            flags: if mobile_router { mh::BA_FLAG_R } else { 0 },
        };
        // IPsec first: once the map says "leave it to xfrm", the policies must be there.
        if let Err(e) = self
            .ipsec_follow(bu.hoa, Some((bu.coa, &spec.prefixes)))
            .await
        {
            self.refused(&bu, e);
            return;
        }
        match self.upsert_maps(spec.clone()) {
            Ok((change, None)) => self.accepted(&bu, &change, ba),
            Ok((change, Some(kb))) => {
                let sig = self.signalling.as_mut().expect("signalling");
                sig.pending.insert(bu.hoa);
                let (homelink, events) = (self.homelink.clone(), sig.events.clone());
                tokio::spawn(async move {
                    let result = homelink.install(&kb).await;
                    let _ = events.send(Event::KernelDone(Box::new(KernelDone {
                        bu,
                        spec,
                        change,
                        kb,
                        ba,
                        result,
                    })));
                });
            }
            Err(e) => {
                self.restore_ipsec(bu.hoa).await;
                self.refused(&bu, e)
            }
        }
    }

    async fn on_kernel_done(
        &mut self,
        bu: registrar::BindingUpdate,
        spec: BindingSpec,
        change: Change,
        kb: KernelBinding,
        ba: Accepted,
        result: anyhow::Result<()>,
    ) {
        if let Some(sig) = self.signalling.as_mut() {
            sig.pending.remove(&bu.hoa);
        }
        match result {
            Ok(()) => self.accepted(&bu, &change, ba),
            Err(e) => {
                self.rollback(&spec, &change);
                self.restore_ipsec(bu.hoa).await;
                if let Change::Created { .. } = change {
                    let _ = self.homelink.remove(&kb).await;
                }
                self.refused(&bu, e);
            }
        }
    }

    fn accepted(&mut self, bu: &registrar::BindingUpdate, change: &Change, ba: Accepted) {
        let created = matches!(change, Change::Created { .. });
        if created {
            self.advertise(
                self.cache
                    .get(&bu.hoa)
                    .map(|b| b.spec.home_ifindex)
                    .unwrap_or(0),
                bu.hoa,
            );
        }
        tracing::info!(
            hoa = %bu.hoa, coa = %bu.coa, seq = bu.sequence, lifetime_s = u32::from(ba.lifetime_units) * 4,
            "binding {}", if created { "created" } else { "updated" }
        );
        self.send_ba(
            bu,
            registrar::status::ACCEPTED,
            bu.sequence,
            ba.lifetime_units,
            ba.refresh_units,
            ba.flags,
        );
    }

    fn refused(&mut self, bu: &registrar::BindingUpdate, e: anyhow::Error) {
        let status = if e.downcast_ref::<crate::binding::CacheError>().is_some() {
            registrar::status::INSUFFICIENT_RESOURCES
        } else {
            registrar::status::UNSPECIFIED
        };
        tracing::error!(hoa = %bu.hoa, error = %format!("{e:#}"), status, "binding refused");
        self.send_ba(bu, status, bu.sequence, 0, None, 0);
    }

    /// The unsolicited NA after a new binding (RFC 6275 §10.4.1), sent
    /// MAX_NEIGHBOR_ADVERTISEMENT (3) times, a second apart... the first now.
    fn advertise(&self, ifindex: u32, hoa: Ipv6Addr) {
        let (Some(sig), Some(served)) = (
            self.signalling.as_ref(),
            self.served.iter().find(|s| s.ifindex == ifindex),
        ) else {
            return;
        };
        let src = served
            .addresses
            .iter()
            .find(|a| a.addr.segments()[0] & 0xffc0 == 0xfe80)
            .or(served.addresses.first())
            .map(|a| a.addr);
        let Some(src) = src else {
            return;
        };
        if let Err(e) = sig.ndisc.advertise(ifindex, src, hoa, served.mac) {
            tracing::warn!(%hoa, error = %format!("{e:#}"), "unsolicited neighbour advertisement failed");
        }
    }

    /// Sends a BA for `bu` (RFC 6275 §10.3.1: regardless of the A bit).
    fn send_ba(
        &mut self,
        bu: &registrar::BindingUpdate,
        status: u8,
        sequence: u16,
        lifetime_units: u16,
        refresh_units: Option<u16>,
        flags: u8,
    ) {
        let fields = mh::BaFields {
            status,
            flags,
            sequence,
            lifetime_units,
        };
        // With IPsec, the BA goes through xfrm (ESP transport, RFC 3776 §3.2) and the TC
        // program adds the RH2 — which needs a route to the HoA: the binding's, or one made
        // for this message (`route_protected_refusal`).
        let away = bu.coa != bu.hoa;
        let bound = self
            .cache
            .get(&bu.hoa)
            .is_some_and(|b| b.spec.coa == bu.coa);
        let protected = self.ipsec_signalling(&bu.hoa);
        if protected && away && !bound {
            return self.route_protected_refusal(bu.clone(), fields, refresh_units);
        }
        if protected && away {
            // Tell the TC program this message's CoA, so a stale refusal entry cannot win;
            // the binding's permanent neighbour entry makes the send synchronous, so it is
            // forgotten right after.
            if let Err(e) = self.dataplane.set_signal_coa(bu.hoa, bu.coa) {
                tracing::warn!(hoa = %bu.hoa, error = %format!("{e:#}"), "writing the BA's CoA failed");
            }
            self.signal_coas.insert(bu.hoa, bu.coa);
        }
        if let Err(e) = self.transmit_ba(bu, &fields, refresh_units, protected) {
            tracing::warn!(coa = %bu.coa, error = %format!("{e:#}"), "sending a BA failed");
        }
        if protected && away {
            self.forget_signal_coa(bu.hoa, bu.coa);
        }
    }

    /// Puts a BA on the wire and counts it: through xfrm (`protected`: the MH socket, marked
    /// for the TC program's RH2 when the MN is away), or built whole on the raw socket.
    fn transmit_ba(
        &mut self,
        bu: &registrar::BindingUpdate,
        fields: &mh::BaFields,
        refresh_units: Option<u16>,
        protected: bool,
    ) -> anyhow::Result<()> {
        let sig = self
            .signalling
            .as_mut()
            .ok_or_else(|| anyhow!("signalling is not running"))?;
        let away = bu.coa != bu.hoa;
        let result = if protected {
            mobility::ba_message(bu.ha_address, bu.hoa, fields, refresh_units)
                .and_then(|m| sig.mh_sender.send(&m, bu.ha_address, bu.hoa, away))
        } else {
            mobility::ba_packet(bu.ha_address, bu.hoa, bu.coa, fields, refresh_units)
                .and_then(|p| Ok(sig.sender.send(&p, bu.coa, 0)?))
        };
        match result {
            Ok(()) => sig.stats.ba_sent += 1,
            Err(_) => sig.stats.send_errors += 1,
        }
        result
    }

    /// An ESP-protected BA for a mobile node away from home without a binding (a refusal,
    /// RFC 3776 §4.1): the kernel needs a route to the HoA for xfrm to protect it and the TC
    /// program the CoA for the RH2. Both are put in place for the one message — a host route
    /// and neighbour entry on the home link (no proxy: the HoA is not defended) and the CoA in
    /// `HA_SIGNAL_COA` — by a task, and removed once the BA is out.
    fn route_protected_refusal(
        &mut self,
        bu: registrar::BindingUpdate,
        fields: mh::BaFields,
        refresh_units: Option<u16>,
    ) {
        let kb = match self.home_link_for(&bu.hoa) {
            Ok((s, _)) => KernelBinding {
                hoa: bu.hoa,
                ifindex: s.ifindex,
                mac: s.mac,
                mtu: ha_ebpf_tunnel_mtu(s.mtu),
                prefixes: vec![],
                proxy: false,
            },
            Err(e) => {
                tracing::warn!(hoa = %bu.hoa, error = %format!("{e:#}"), "no home link to route a protected BA through");
                return;
            }
        };
        if let Err(e) = self.dataplane.set_signal_coa(bu.hoa, bu.coa) {
            tracing::warn!(hoa = %bu.hoa, error = %format!("{e:#}"), "a protected BA cannot be routed");
            return;
        }
        self.signal_coas.insert(bu.hoa, bu.coa);
        let Some(sig) = self.signalling.as_ref() else {
            return;
        };
        let events = sig.events.clone();
        // Routed already: the binding's own route and neighbour entry (a refusal to another
        // CoA), or another node on the home link that holds the HoA (DAD failed — a neighbour
        // entry of ours would hijack it). The kernel may still be resolving that neighbour,
        // so the CoA is forgotten a little later rather than right after the send.
        if self.cache.get(&bu.hoa).is_some() || fields.status == registrar::status::DAD_FAILED {
            let (hoa, coa) = (bu.hoa, bu.coa);
            if let Err(e) = self.transmit_ba(&bu, &fields, refresh_units, true) {
                tracing::warn!(%hoa, %coa, status = fields.status, error = %format!("{e:#}"), "sending a protected refusal failed");
            }
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let _ = events.send(Event::SignalCoaDone { hoa, coa });
            });
            return;
        }
        let homelink = self.homelink.clone();
        tokio::spawn(async move {
            let result = homelink.install(&kb).await;
            let _ = events.send(Event::RefusalRouted(Box::new(RefusalRouted {
                bu,
                fields,
                refresh_units,
                kb,
                result,
            })));
        });
    }

    async fn on_refusal_routed(&mut self, r: RefusalRouted) {
        let hoa = r.bu.hoa;
        let sent = match r.result {
            Ok(()) => self.transmit_ba(&r.bu, &r.fields, r.refresh_units, true),
            Err(e) => {
                if let Some(sig) = self.signalling.as_mut() {
                    sig.stats.send_errors += 1;
                }
                Err(e)
            }
        };
        if let Err(e) = sent {
            tracing::warn!(%hoa, coa = %r.bu.coa, status = r.fields.status, error = %format!("{e:#}"), "sending a protected refusal failed");
        }
        // Undo — unless a registration of this HoA started meanwhile: its kernel state is the
        // same entries.
        let busy = self.cache.get(&hoa).is_some()
            || self
                .signalling
                .as_ref()
                .is_some_and(|s| s.pending.contains(&hoa));
        if !busy && let Err(e) = self.homelink.remove(&r.kb).await {
            tracing::warn!(%hoa, error = %format!("{e:#}"), "removing the route of a protected refusal failed");
        }
        self.forget_signal_coa(hoa, r.bu.coa);
    }

    /// Removes `hoa`'s `HA_SIGNAL_COA` entry if it still holds `coa` (another refusal may have
    /// replaced it).
    fn forget_signal_coa(&mut self, hoa: Ipv6Addr, coa: Ipv6Addr) {
        if self.signal_coas.get(&hoa) == Some(&coa) {
            self.signal_coas.remove(&hoa);
            let _ = self.dataplane.remove_signal_coa(hoa);
        }
    }

    /// Sends a Binding Error, at most one per destination per second (RFC 6275 §9.3.3).
    fn send_be(&mut self, src: Ipv6Addr, dst: Ipv6Addr, status: u8, hoa: Ipv6Addr) {
        let Some(sig) = self.signalling.as_mut() else {
            return;
        };
        let now = Instant::now();
        if sig
            .last_be
            .get(&dst)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
        {
            return;
        }
        if sig.last_be.len() > 65536 {
            sig.last_be
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
        }
        sig.last_be.insert(dst, now);
        let result = mobility::be_packet(src, dst, status, hoa)
            .and_then(|p| Ok(sig.sender.send(&p, dst, 0)?));
        match result {
            Ok(()) => sig.stats.be_sent += 1,
            Err(e) => {
                sig.stats.send_errors += 1;
                tracing::warn!(%dst, error = %format!("{e:#}"), "sending a BE failed");
            }
        }
    }

    async fn expire(&mut self) {
        for hoa in self.cache.expired(Instant::now()) {
            match self.remove_binding(&hoa).await {
                Ok(_) => tracing::info!(%hoa, "binding expired and removed"),
                Err(e) => {
                    tracing::error!(%hoa, error = %format!("{e:#}"), "removing an expired binding failed")
                }
            }
        }
    }

    /// Removes every binding's kernel state (routes, neighbour and proxy entries).
    async fn shutdown(&mut self) {
        if let Some(mut ipsec) = self.ipsec.take()
            && let Err(e) = ipsec.remove_all().await
        {
            tracing::warn!(error = %format!("{e:#}"), "removing IPsec policies failed");
        }
        if let Some((lo, hoa)) = self.hoa_on_lo.take()
            && let Err(e) = self.homelink.del_address(lo, hoa, 128).await
        {
            tracing::warn!(error = %format!("{e:#}"), "removing the HoA from lo failed");
        }
        let hoas: Vec<Ipv6Addr> = self.cache.iter().map(|b| b.spec.hoa).collect();
        for hoa in hoas {
            if let Err(e) = self.remove_binding(&hoa).await {
                tracing::warn!(%hoa, error = %format!("{e:#}"), "cleaning up a binding failed");
            }
        }
    }
}

fn ha_ebpf_tunnel_mtu(link_mtu: u32) -> u32 {
    link_mtu.saturating_sub(40).max(1280)
}

/// Runs the daemon until a termination signal arrives.
pub async fn run(config: Config, socket: &Path) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(config).await?;
    let control = ControlSocket::bind(socket)?;
    let (commands_tx, mut commands) = mpsc::channel::<Command>(256);

    // Slow path: fragmentation of tunnel packets the XDP program hands over.
    let ring = daemon.dataplane.take_punt_ring()?;
    let sender = TunnelSender::new(daemon.config.dataplane.outer_hop_limit)?;
    let punt_task = tokio::spawn(punt::serve(ring, sender, daemon.punt_stats.clone()));

    // Signalling (home agent role): a task reads Mobility Headers into the event loop.
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let mh_task = {
        let mh = daemon.start_signalling(events_tx.clone())?;
        let tx = events_tx.clone();
        tokio::spawn(async move {
            loop {
                match mh.recv().await {
                    Ok(rx) => {
                        if tx.send(Event::Mh(rx)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "receiving a Mobility Header failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };
    if daemon.config.role == Role::MobileNode {
        daemon.start_mobile_node().await?;
    }

    // Routing changes invalidate cached next hops (coalesced: one bump per wake-up).
    let routing_changed = Arc::new(Notify::new());
    let addresses_changed = Arc::new(Notify::new());
    let (notify, notify_addr) = (routing_changed.clone(), addresses_changed.clone());
    let watch_task = tokio::spawn(crate::homelink::watch_routing(move |kind| {
        notify.notify_one();
        if kind == crate::homelink::RoutingEvent::Address {
            notify_addr.notify_one();
        }
    }));
    tracing::info!(socket = %socket.display(), "hagent running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // The socket file is removed when the task (which owns `control`) is dropped.
    let mut control_task = tokio::spawn(async move { control.serve(commands_tx).await });
    loop {
        let next_expiry = daemon
            .cache
            .next_expiry()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mn_deadline = daemon
            .mn
            .as_ref()
            .and_then(|m| m.next_deadline())
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut control_task => break,
            Some(cmd) = commands.recv() => {
                let result = daemon.handle(cmd.request).await;
                let _ = cmd.reply.send(result);
            }
            _ = tokio::time::sleep_until(next_expiry.into()) => daemon.expire().await,
            Some(event) = events.recv() => match event {
                Event::Mh(rx) => daemon.on_mh(rx).await,
                Event::KernelDone(k) => {
                    let KernelDone { bu, spec, change, kb, ba, result } = *k;
                    daemon.on_kernel_done(bu, spec, change, kb, ba, result).await
                }
                Event::DadDone { bu, decision, ifindex, unique } => {
                    daemon.on_dad_done(bu, decision, ifindex, unique).await
                }
                Event::RefusalRouted(r) => daemon.on_refusal_routed(*r).await,
                Event::SignalCoaDone { hoa, coa } => daemon.forget_signal_coa(hoa, coa),
            },
            _ = routing_changed.notified() => {
                if let Err(e) = daemon.dataplane.bump_nexthop_epoch() {
                    tracing::error!(error = %e, "invalidating cached next hops failed");
                }
                if daemon.mn.is_some() {
                    daemon.movement().await;
                }
            }
            _ = tokio::time::sleep_until(mn_deadline.into()) => {
                if let Some(mn) = daemon.mn.as_mut() {
                    let actions = mn.on_timer(Instant::now());
                    daemon.mn_actions(actions).await;
                }
            }
            _ = addresses_changed.notified() => daemon.refresh_addresses(),
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT received, shutting down");
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM received, shutting down");
                break;
            }
        }
    }
    control_task.abort();
    let _ = control_task.await;
    punt_task.abort();
    watch_task.abort();
    mh_task.abort();
    daemon.shutdown().await;
    // Dropping the data plane detaches every program and unloads the maps.
    drop(daemon);
    tracing::info!("data plane detached; bye");
    Ok(())
}
