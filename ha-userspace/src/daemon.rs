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

use crate::{
    binding::{Binding, BindingCache, BindingSpec, Change, Origin},
    config::{Config, Role, is_global_unicast},
    control::{Command, ControlSocket, Request},
    dataplane::{self, Dataplane, DataplaneOptions},
    homelink::{HomeLink, KernelBinding},
    punt::{self, PuntStats, TunnelSender},
    system,
};

/// An interface the node serves.
#[derive(Clone, Debug)]
pub struct Served {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// The daemon's state, owned by the event loop.
pub struct Daemon {
    config: Config,
    dataplane: Dataplane,
    cache: BindingCache,
    homelink: HomeLink,
    served: Vec<Served>,
    punt_stats: Arc<Mutex<PuntStats>>,
}

impl Daemon {
    /// Loads and attaches the data plane and prepares the home links. Nothing is left behind
    /// if this fails: the data plane detaches when dropped.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
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
            });
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
        Ok(Self {
            cache: BindingCache::new(d.max_bindings),
            config,
            dataplane,
            homelink,
            served,
            punt_stats: Arc::default(),
        })
    }

    fn handle_stats(&self) -> anyhow::Result<serde_json::Value> {
        Ok(json!({
            "counters": self.dataplane.counters()?,
            "attachments": self.dataplane.attachments(),
            "bindings": self.cache.len(),
            "slow_path": *self.punt_stats.lock().map_err(|_| anyhow!("stats lock poisoned"))?,
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
        for s in &self.served {
            let addrs = system::ipv6_addresses(&s.name)?;
            if addrs.iter().any(|a| a.prefix_len < 128 && a.covers(hoa)) {
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

    /// Adds or updates a binding everywhere: cache, data plane, kernel.
    pub async fn upsert_binding(&mut self, spec: BindingSpec) -> anyhow::Result<Change> {
        let now = Instant::now();
        let change = self.cache.upsert(spec.clone(), now)?;
        let id = match &change {
            Change::Created { id } | Change::Updated { id, .. } => *id,
        };
        let result = self.apply(&spec, &change, id).await;
        if let Err(e) = result {
            // Roll back so cache, maps and kernel agree.
            match &change {
                Change::Created { .. } => {
                    self.cache.remove(&spec.hoa);
                    let _ = self.dataplane.remove_binding(spec.hoa);
                    let _ = self.homelink.remove(&self.kernel_binding(&spec)).await;
                }
                Change::Updated { previous, .. } => {
                    let _ = self.cache.upsert(previous.clone(), now);
                    let _ = self
                        .dataplane
                        .set_binding(previous.hoa, &self.entry(previous, id));
                }
            }
            return Err(e);
        }
        Ok(change)
    }

    async fn apply(&mut self, spec: &BindingSpec, change: &Change, id: u32) -> anyhow::Result<()> {
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
        let previous_prefixes = match change {
            Change::Updated { previous, .. } => previous.prefixes.clone(),
            Change::Created { .. } => vec![],
        };
        for &(p, l) in &previous_prefixes {
            if !spec.prefixes.contains(&(p, l)) {
                self.dataplane.remove_prefix(p, l)?;
            }
        }
        for &(p, l) in &spec.prefixes {
            self.dataplane.set_prefix(p, l, &self.entry(spec, id))?;
        }
        if self.config.role == Role::HomeAgent {
            self.homelink.install(&self.kernel_binding(spec)).await?;
        }
        Ok(())
    }

    fn entry(&self, spec: &BindingSpec, id: u32) -> BindingEntry {
        let (local, remote) = match self.config.role {
            Role::HomeAgent => (spec.ha_address, spec.coa),
            Role::MobileNode => (spec.coa, spec.ha_address),
        };
        BindingEntry {
            local: local.octets(),
            remote: remote.octets(),
            flags: spec.flags,
            binding_id: id,
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

    // Routing changes invalidate cached next hops (coalesced: one bump per wake-up).
    let routing_changed = Arc::new(Notify::new());
    let notify = routing_changed.clone();
    let watch_task = tokio::spawn(crate::homelink::watch_routing(move || notify.notify_one()));
    tracing::info!(socket = %socket.display(), "hagent running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // The socket file is removed when the task (which owns `control`) is dropped.
    let mut control_task = tokio::spawn(async move { control.serve(commands_tx).await });
    loop {
        let next_expiry = daemon
            .cache
            .next_expiry()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut control_task => break,
            Some(cmd) = commands.recv() => {
                let result = daemon.handle(cmd.request).await;
                let _ = cmd.reply.send(result);
            }
            _ = tokio::time::sleep_until(next_expiry.into()) => daemon.expire().await,
            _ = routing_changed.notified() => {
                if let Err(e) = daemon.dataplane.bump_nexthop_epoch() {
                    tracing::error!(error = %e, "invalidating cached next hops failed");
                }
            }
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
    daemon.shutdown().await;
    // Dropping the data plane detaches every program and unloads the maps.
    drop(daemon);
    tracing::info!("data plane detached; bye");
    Ok(())
}
