//! The binding layer: the only writer of the binding cache, the data plane's binding maps and
//! the kernel state that goes with a binding (mobile network prefix routes, IPsec tunnel
//! policies, neighbour entries the data plane made). Home registration, the mobile node and
//! static bindings all change bindings through [`Bindings::apply`], which does every step or
//! none: IPsec first (once a map entry says "leave the payload to xfrm", the policies must be
//! there), then the cache and the maps (in place: a CoA change is one map update, never delete
//! and insert), then the kernel; a failure at any step undoes the steps before it.
//!
//! Per plain binding (no IPsec tunnel, no mobile network prefix) in the home agent role, this is
//! one map write: no netlink request (`docs/design.md`, "Home links without per-binding state").

pub mod cache;
mod tunnels;

use std::{
    collections::{HashMap, HashSet},
    net::Ipv6Addr,
    time::Instant,
};

use anyhow::{Context as _, anyhow};
use ha_common::abi::{
    BINDING_F_IPSEC_PAYLOAD, BindingEntry, BindingRecord, NEVER_EXPIRES, ORIGIN_REGISTERED,
    ORIGIN_STATIC,
};
use serde::Serialize;

pub use cache::{Binding, BindingCache, BindingSpec, CacheError, Change, Origin};

use crate::{
    config::{Config, Role, umip::IpsecPolicySet},
    dataplane::Dataplane,
    homelink::{HomeLink, OwnedRoute},
    ipsec::{self, Ipsec, Side},
};

/// A change to the bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the binding of `spec.hoa`, or replace what it holds (its id and counters stay).
    Put(BindingSpec),
    /// Remove the binding of this home address.
    Remove(Ipv6Addr),
}

impl Op {
    pub fn hoa(&self) -> Ipv6Addr {
        match self {
            Op::Put(s) => s.hoa,
            Op::Remove(h) => *h,
        }
    }
}

/// What [`Bindings::apply`] did.
#[derive(Clone, Debug)]
pub enum Applied {
    Created { id: u32 },
    Updated { id: u32, previous: BindingSpec },
    Removed(Binding),
}

/// Why [`Bindings::apply`] changed nothing.
#[derive(Debug)]
pub enum ApplyError {
    /// No room for another binding (BA status 130, Insufficient resources).
    Full { capacity: u32 },
    /// A mobile network prefix is bound to another home address already.
    PrefixTaken {
        prefix: Ipv6Addr,
        len: u8,
        owner: Ipv6Addr,
    },
    /// Nothing to remove.
    NotBound(Ipv6Addr),
    /// The IPsec, data plane or kernel step failed; the steps before it were undone.
    Failed(anyhow::Error),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Full { capacity } => write!(
                f,
                "binding cache full ({capacity} bindings; raise dataplane.max_bindings)"
            ),
            ApplyError::PrefixTaken { prefix, len, owner } => {
                write!(
                    f,
                    "mobile network prefix {prefix}/{len} is bound to {owner}"
                )
            }
            ApplyError::NotBound(hoa) => write!(f, "no binding for {hoa}"),
            ApplyError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// A link the data plane serves, as the binding layer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// One binding as `hagent bindings` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct View {
    pub hoa: Ipv6Addr,
    pub coa: Ipv6Addr,
    pub ha_address: Ipv6Addr,
    pub sequence: u16,
    pub lifetime_remaining_s: Option<u64>,
    pub origin: Origin,
    pub id: u32,
    pub interface: Option<String>,
    pub prefixes: Vec<String>,
    pub packets_tunnelled: u64,
    pub bytes_tunnelled: u64,
    pub packets_reverse: u64,
    pub bytes_reverse: u64,
}

/// The bindings and everything that projects them.
pub struct Bindings {
    role: Role,
    cache: BindingCache,
    dataplane: Dataplane,
    kernel: HomeLink,
    ipsec: Option<Ipsec>,
    ipsec_sets: Vec<IpsecPolicySet>,
    tunnels: tunnels::Tunnels,
    links: Vec<Link>,
    /// Which home address each mobile network prefix is bound to.
    prefix_owner: HashMap<(Ipv6Addr, u8), Ipv6Addr>,
    /// Routes installed at start for home prefixes that are not on-link.
    home_routes: Vec<OwnedRoute>,
    /// Links whose allmulti we turned on (and turn off at shutdown).
    allmulti: Vec<u32>,
    /// What `HA_SIGNAL_COA` holds: the CoA of the protected refusal in flight per HoA.
    signal_coas: HashMap<Ipv6Addr, Ipv6Addr>,
    /// Neighbour entries installed for protected refusals.
    refusal_neighbours: HashSet<(u32, Ipv6Addr)>,
    /// Routes whose removal failed; tried again at shutdown.
    leftovers: Vec<OwnedRoute>,
}

/// What [`Bindings::restore`] found.
#[derive(Debug, Default)]
struct Restored {
    bindings: usize,
    expired: usize,
    /// Map entries without a binding record, removed.
    orphans: usize,
}

/// The record of a binding, as the data plane keeps it for the next daemon.
fn record_of(b: &Binding, now: Instant) -> BindingRecord {
    let boot_now = crate::system::boottime_ns();
    let at = |t: Instant| -> u64 {
        if t >= now {
            boot_now.saturating_add(t.duration_since(now).as_nanos() as u64)
        } else {
            boot_now.saturating_sub(now.duration_since(t).as_nanos() as u64)
        }
    };
    let s = &b.spec;
    BindingRecord {
        hoa: s.hoa.octets(),
        coa: s.coa.octets(),
        ha_address: s.ha_address.octets(),
        registered_ns: at(b.registered_at),
        expires_ns: b.expires_at.map_or(NEVER_EXPIRES, at),
        home_ifindex: s.home_ifindex,
        flags: s.flags,
        binding_id: b.id,
        sequence: s.sequence,
        origin: match s.origin {
            Origin::Static => ORIGIN_STATIC,
            Origin::Registered => ORIGIN_REGISTERED,
        },
        _pad: 0,
    }
}

/// The binding a record describes, on this process's clock.
fn binding_of(
    r: &BindingRecord,
    prefixes: Vec<(Ipv6Addr, u8)>,
    now: Instant,
    boot_now: u64,
) -> Binding {
    let on_our_clock = |ns: u64| -> Instant {
        if ns >= boot_now {
            now + std::time::Duration::from_nanos(ns - boot_now)
        } else {
            now.checked_sub(std::time::Duration::from_nanos(boot_now - ns))
                .unwrap_or(now)
        }
    };
    let mut prefixes = prefixes;
    prefixes.sort();
    let expires_at = (r.expires_ns != NEVER_EXPIRES).then(|| on_our_clock(r.expires_ns));
    let registered_at = on_our_clock(r.registered_ns);
    Binding {
        spec: BindingSpec {
            hoa: Ipv6Addr::from(r.hoa),
            coa: Ipv6Addr::from(r.coa),
            ha_address: Ipv6Addr::from(r.ha_address),
            home_ifindex: r.home_ifindex,
            sequence: r.sequence,
            lifetime: expires_at.map(|t| t.saturating_duration_since(registered_at)),
            flags: r.flags,
            prefixes,
            origin: if r.origin == ORIGIN_STATIC {
                Origin::Static
            } else {
                Origin::Registered
            },
        },
        id: r.binding_id,
        registered_at,
        expires_at,
    }
}

/// The tunnel MTU for a link MTU: 40 bytes for the outer header, at least the IPv6 minimum.
pub fn tunnel_mtu(link_mtu: u32) -> u32 {
    link_mtu.saturating_sub(40).max(1280)
}

impl Bindings {
    /// Takes over the data plane (loaded and attached) and the kernel state of `links`. A data
    /// plane an earlier daemon pinned is adopted: its binding records become the cache again
    /// (remaining lifetimes, sequence numbers, ids and counters as they were; the expired
    /// ones removed), and the maps are reconciled to them. Then the kernel state on `links` —
    /// and only there — is made what the cache needs: routes with our protocol number that
    /// no binding or home prefix needs are removed and missing ones added, neighbour entries
    /// pointing at our MACs for unbound addresses and old-style proxy ND entries in the home
    /// prefixes are removed; allmulti goes on, the IPsec policies and SAs of the
    /// configuration are installed. Nothing stays behind if this fails.
    pub async fn start(
        dataplane: Dataplane,
        config: &Config,
        links: Vec<Link>,
        home_routes: Vec<OwnedRoute>,
        home_prefixes: Vec<(Ipv6Addr, u8)>,
    ) -> anyhow::Result<Self> {
        let kernel = HomeLink::new()?;
        let mut me = Self {
            role: config.role,
            cache: BindingCache::new(config.dataplane.max_bindings),
            dataplane,
            kernel,
            ipsec: None,
            ipsec_sets: config.ipsec.sets.clone(),
            tunnels: tunnels::Tunnels::default(),
            links,
            prefix_owner: HashMap::new(),
            home_routes: Vec::new(),
            allmulti: Vec::new(),
            signal_coas: HashMap::new(),
            refusal_neighbours: HashSet::new(),
            leftovers: Vec::new(),
        };
        let started = Instant::now();
        if me.dataplane.adopted() {
            let restored = me.restore(started)?;
            tracing::info!(
                bindings = restored.bindings,
                expired = restored.expired,
                orphans = restored.orphans,
                "binding cache restored from the pinned data plane"
            );
        }
        let ifindexes: Vec<u32> = me.links.iter().map(|l| l.ifindex).collect();
        let mut desired = home_routes.clone();
        if me.role == Role::HomeAgent {
            for b in me.cache.iter() {
                for &p in &b.spec.prefixes {
                    desired.push(me.prefix_route(&b.spec, p));
                }
            }
        }
        let (stale, missing) = me.kernel.reconcile_routes(&ifindexes, &desired).await?;
        if stale > 0 {
            tracing::info!(routes = stale, "removed routes an earlier hagent left");
        }
        let swept = me.sweep_neighbours().await?;
        if swept > 0 {
            tracing::info!(
                entries = swept,
                "removed neighbour entries an earlier hagent left"
            );
        }
        if me.role == Role::HomeAgent {
            let in_home = |a: &Ipv6Addr| {
                home_prefixes
                    .iter()
                    .any(|&(p, l)| crate::system::prefix_contains(p, l, *a))
            };
            let proxies = me.kernel.sweep_proxies(&ifindexes, in_home).await?;
            if proxies > 0 {
                tracing::info!(
                    entries = proxies,
                    "removed proxy ND entries in the home prefixes (hagent answers for bound \
                     home addresses itself)"
                );
            }
        }
        if let Err(e) = me.start_kernel(&home_routes, &missing, config).await {
            // An adopted data plane stays as it was (forwarding, its routes); what this start
            // added itself goes.
            if me.dataplane.adopted() {
                if let Some(mut x) = me.ipsec.take() {
                    let _ = x.remove_all().await;
                }
            } else {
                me.shutdown().await;
            }
            return Err(e);
        }
        Ok(me)
    }

    /// Rebuilds the cache from the records of the adopted data plane and makes the maps agree
    /// with it: map entries without a record go, expired bindings are removed. (The entries
    /// are rewritten by [`rewrite_entries`](Self::rewrite_entries) once IPsec is up.)
    fn restore(&mut self, now: Instant) -> anyhow::Result<Restored> {
        let boot_now = crate::system::boottime_ns();
        let records = self.dataplane.records()?;
        let prefixes = self.dataplane.prefixes()?;
        let mut by_id: HashMap<u32, Vec<(Ipv6Addr, u8)>> = HashMap::new();
        for (p, e) in &prefixes {
            by_id.entry(e.binding_id).or_default().push(*p);
        }
        let mut out = Restored::default();
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for r in records {
            let b = binding_of(
                &r,
                by_id.remove(&r.binding_id).unwrap_or_default(),
                now,
                boot_now,
            );
            let served = self.role == Role::MobileNode || self.link(r.home_ifindex).is_some();
            if r.expires_ns != NEVER_EXPIRES && r.expires_ns <= boot_now {
                expired.push(b);
            } else if !served {
                // Its home link is no longer served: nobody here answers for it.
                tracing::warn!(hoa = %b.spec.hoa, ifindex = r.home_ifindex, "binding dropped: its home link is not served any more");
                expired.push(b);
            } else {
                live.push(b);
            }
        }
        self.cache
            .restore(live)
            .map_err(|e| anyhow!("the pinned binding records are inconsistent: {e}"))?;
        for b in self.cache.iter() {
            for &p in &b.spec.prefixes {
                self.prefix_owner.insert(p, b.spec.hoa);
            }
        }
        // Map entries nobody has a record of (a daemon killed between the two writes).
        for hoa in self.dataplane.binding_keys()? {
            if self.cache.get(&hoa).is_none() {
                self.dataplane.remove_binding(hoa)?;
                out.orphans += 1;
            }
        }
        for ((p, l), e) in prefixes {
            let owner = self.prefix_owner.get(&(p, l)).copied();
            let bound = owner.and_then(|h| self.cache.get(&h));
            if bound.is_none_or(|b| b.id != e.binding_id) {
                self.dataplane.remove_prefix(p, l)?;
                out.orphans += 1;
            }
        }
        let dad = self.dataplane.clear_dad()?;
        if dad > 0 {
            tracing::debug!(probes = dad, "ended the DAD probes of the earlier daemon");
        }
        out.bindings = self.cache.len();
        // Expired while no daemon ran: removed like any expiry (their prefixes and records
        // with them).
        for b in expired {
            let hoa = b.spec.hoa;
            self.dataplane.remove_binding(hoa)?;
            for &(p, l) in &b.spec.prefixes {
                self.dataplane.remove_prefix(p, l)?;
            }
            self.dataplane.remove_record(hoa)?;
            out.expired += 1;
        }
        Ok(out)
    }

    /// Writes every binding's map entries again from the cache, in place: after a restart the
    /// IPsec flag follows this configuration (and the policies are in place by now).
    fn rewrite_entries(&mut self) -> anyhow::Result<()> {
        let all: Vec<(BindingSpec, u32)> =
            self.cache.iter().map(|b| (b.spec.clone(), b.id)).collect();
        for (spec, id) in &all {
            let entry = self.entry(spec, *id);
            self.dataplane.set_binding(spec.hoa, &entry)?;
            for &(p, l) in &spec.prefixes {
                self.dataplane.set_prefix(p, l, &entry)?;
            }
            if self.role == Role::MobileNode {
                self.dataplane.add_local_address(spec.coa)?;
            }
        }
        Ok(())
    }

    async fn start_kernel(
        &mut self,
        home_routes: &[OwnedRoute],
        missing: &[OwnedRoute],
        config: &Config,
    ) -> anyhow::Result<()> {
        if self.role == Role::HomeAgent {
            for l in self.links.clone() {
                if self.kernel.enable_allmulti(l.ifindex, &l.name).await? {
                    self.allmulti.push(l.ifindex);
                }
            }
            self.home_routes = home_routes.to_vec();
            for r in missing {
                let what = if home_routes.contains(r) {
                    "home_agent.home_prefixes"
                } else {
                    "a restored mobile network prefix"
                };
                self.kernel.add_route(r).await.context(what)?;
            }
        }
        if config.ipsec.use_mn_ha_ipsec {
            // Restored bindings whose tunnel policies the earlier daemon moved to their CoA:
            // their tunnel SAs are there too.
            let side = Side::of(self.role);
            let mut moved = HashMap::new();
            for b in self.cache.iter() {
                let s = &b.spec;
                if !tunnels::Tunnels::policies_of(&self.ipsec_sets, side, s.hoa, &s.prefixes)?
                    .is_empty()
                {
                    moved.insert(s.hoa, s.coa);
                }
            }
            let adopted = self.dataplane.adopted();
            let mut x = start_ipsec(config, adopted, &moved).await?;
            let restored: Vec<BindingSpec> = self
                .cache
                .iter()
                .filter(|b| moved.contains_key(&b.spec.hoa))
                .map(|b| b.spec.clone())
                .collect();
            for BindingSpec {
                hoa, coa, prefixes, ..
            } in restored
            {
                if let Err(e) = self
                    .tunnels
                    .adopt(&mut x, &self.ipsec_sets, side, hoa, (coa, &prefixes))
                    .await
                {
                    let _ = x.remove_all().await;
                    return Err(e.context(format!("restoring the IPsec tunnel of {hoa}")));
                }
            }
            x.set_replace(false);
            self.ipsec = Some(x);
        }
        self.rewrite_entries()
    }

    /// Removes the neighbour entries pointing at our MACs, except those of bound HoAs.
    async fn sweep_neighbours(&self) -> anyhow::Result<usize> {
        let links: Vec<(u32, [u8; 6])> = self.links.iter().map(|l| (l.ifindex, l.mac)).collect();
        let cache = &self.cache;
        self.kernel
            .sweep_neighbours(&links, |a| cache.get(a).is_some())
            .await
    }

    /// A reload changed the IPsec policy sets (`UseMnHaIPsec` and the SAs stay as they are):
    /// the transport policies become the new sets' (replaced in place, those no set gives any
    /// more removed), each binding whose tunnel policies differ has its old ones taken down
    /// (migrated home, removed) and the new ones put up at its CoA, and the map entries follow
    /// (whether the payload is left to xfrm). Bindings stay; a failure is returned with what
    /// was done so far in place.
    pub async fn set_ipsec_sets(&mut self, sets: &[IpsecPolicySet]) -> anyhow::Result<()> {
        let Some(mut x) = self.ipsec.take() else {
            anyhow::bail!("UseMnHaIPsec is off");
        };
        x.set_replace(true);
        let result = self.apply_ipsec_sets(&mut x, sets).await;
        x.set_replace(false);
        self.ipsec = Some(x);
        self.ipsec_sets = sets.to_vec();
        self.rewrite_entries()?;
        result
    }

    async fn apply_ipsec_sets(
        &mut self,
        x: &mut Ipsec,
        sets: &[IpsecPolicySet],
    ) -> anyhow::Result<()> {
        let side = Side::of(self.role);
        let transport = |sets: &[IpsecPolicySet]| -> anyhow::Result<Vec<ipsec::Policy>> {
            let mut v = ipsec::nd_bypass_policies();
            for set in sets {
                v.extend(ipsec::transport_policies(set, side)?);
            }
            Ok(v)
        };
        let (old, new) = (transport(&self.ipsec_sets)?, transport(sets)?);
        for p in &new {
            x.install(p).await?;
        }
        let gone: Vec<ipsec::Policy> = old
            .into_iter()
            .filter(|p| !new.iter().any(|q| ipsec::same_selector(p, q)))
            .collect();
        x.remove(&gone).await?;
        let bound: Vec<BindingSpec> = self.cache.iter().map(|b| b.spec.clone()).collect();
        for s in &bound {
            let before = tunnels::Tunnels::policies_of(&self.ipsec_sets, side, s.hoa, &s.prefixes)?;
            let after = tunnels::Tunnels::policies_of(sets, side, s.hoa, &s.prefixes)?;
            if before == after {
                continue;
            }
            self.tunnels
                .follow(x, &self.ipsec_sets, side, s.hoa, None)
                .await
                .with_context(|| format!("taking down the IPsec tunnel of {}", s.hoa))?;
            self.tunnels
                .follow(x, sets, side, s.hoa, Some((s.coa, &s.prefixes)))
                .await
                .with_context(|| format!("putting up the IPsec tunnel of {}", s.hoa))?;
        }
        Ok(())
    }

    /// Removes the pinned data plane (it detaches when this is dropped).
    pub fn unpin(&mut self) -> anyhow::Result<usize> {
        self.dataplane.unpin()
    }

    /// Links whose allmulti this daemon turned on (for the ownership record).
    pub fn allmulti(&self) -> &[u32] {
        &self.allmulti
    }

    /// Declares allmulti on `ifindex` ours (an earlier daemon of this instance turned it on).
    pub fn adopt_allmulti(&mut self, ifindex: u32) {
        if !self.allmulti.contains(&ifindex) {
            self.allmulti.push(ifindex);
        }
    }

    fn link(&self, ifindex: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.ifindex == ifindex)
    }

    pub fn get(&self, hoa: &Ipv6Addr) -> Option<&Binding> {
        self.cache.get(hoa)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn capacity(&self) -> u32 {
        self.cache.capacity()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.cache.iter()
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// The punt ring buffer, for the slow path's task.
    pub fn take_punt_ring(&mut self) -> anyhow::Result<aya::maps::RingBuf<aya::maps::MapData>> {
        self.dataplane.take_punt_ring()
    }

    /// Invalidates every cached next hop (a routing change).
    pub fn bump_nexthop_epoch(&mut self) -> anyhow::Result<u64> {
        self.dataplane.bump_nexthop_epoch()
    }

    pub fn next_expiry(&mut self) -> Option<Instant> {
        self.cache.next_expiry()
    }

    /// Home addresses whose bindings have expired (each once; remove them with `apply`).
    pub fn expired(&mut self, now: Instant) -> Vec<Ipv6Addr> {
        self.cache.expired(now)
    }

    /// Up to `limit` bindings after `after`, in home address order, with their counters.
    pub fn page(
        &self,
        after: Option<Ipv6Addr>,
        limit: usize,
        now: Instant,
    ) -> anyhow::Result<Vec<View>> {
        self.cache
            .iter_after(after)
            .take(limit)
            .map(|b| self.view_of(b, now))
            .collect()
    }

    /// The binding of `hoa` with its counters.
    pub fn view(&self, hoa: &Ipv6Addr, now: Instant) -> anyhow::Result<Option<View>> {
        self.cache
            .get(hoa)
            .map(|b| self.view_of(b, now))
            .transpose()
    }

    fn view_of(&self, b: &Binding, now: Instant) -> anyhow::Result<View> {
        let c = self.dataplane.binding_counters(b.id)?;
        let s = &b.spec;
        Ok(View {
            hoa: s.hoa,
            coa: s.coa,
            ha_address: s.ha_address,
            sequence: s.sequence,
            lifetime_remaining_s: b.lifetime_remaining(now),
            origin: s.origin,
            id: b.id,
            interface: self.link(s.home_ifindex).map(|l| l.name.clone()),
            prefixes: s.prefixes.iter().map(|(p, l)| format!("{p}/{l}")).collect(),
            packets_tunnelled: c.tunnelled_packets,
            bytes_tunnelled: c.tunnelled_bytes,
            packets_reverse: c.reverse_packets,
            bytes_reverse: c.reverse_bytes,
        })
    }

    /// The xfrm requests made (by operation and outcome), the policies and the SAs installed;
    /// None without `UseMnHaIPsec`.
    pub fn ipsec_stats(&self) -> Option<(ipsec::IpsecStats, usize, usize)> {
        self.ipsec
            .as_ref()
            .map(|x| (x.stats(), x.installed().len(), x.sa_count()))
    }

    /// Whether signalling for `hoa` must be ESP-protected (an `IPsecPolicySet` lists it).
    pub fn ipsec_signalling(&self, hoa: &Ipv6Addr) -> bool {
        self.ipsec.is_some()
            && self
                .ipsec_sets
                .iter()
                .any(|s| s.home_addresses.iter().any(|(a, _)| a == hoa))
    }

    /// Whether `hoa`'s payload goes through the kernel's xfrm (`TunnelPayload`) rather than
    /// the XDP fast path.
    fn ipsec_payload(&self, hoa: &Ipv6Addr) -> bool {
        self.ipsec.is_some()
            && self
                .ipsec_sets
                .iter()
                .any(|s| ipsec::protects_payload(s, *hoa))
    }

    /// Applies `op`: every step, or — on error — none.
    pub async fn apply(&mut self, op: Op, now: Instant) -> Result<Applied, ApplyError> {
        match op {
            Op::Put(spec) => self.put(spec, now).await,
            Op::Remove(hoa) => self.remove(hoa).await,
        }
    }

    async fn put(&mut self, spec: BindingSpec, now: Instant) -> Result<Applied, ApplyError> {
        let previous = self.cache.get(&spec.hoa).map(|b| b.spec.clone());
        if previous.is_none() && self.cache.is_full() {
            return Err(ApplyError::Full {
                capacity: self.cache.capacity(),
            });
        }
        for &(prefix, len) in &spec.prefixes {
            if let Some(&owner) = self.prefix_owner.get(&(prefix, len))
                && owner != spec.hoa
            {
                return Err(ApplyError::PrefixTaken { prefix, len, owner });
            }
        }
        // 1. IPsec.
        if let Err(e) = self
            .follow_ipsec(spec.hoa, Some((spec.coa, &spec.prefixes)))
            .await
        {
            self.restore_ipsec(spec.hoa, previous.as_ref()).await;
            return Err(ApplyError::Failed(e));
        }
        // 2. The cache and the maps.
        let change = match self.cache.upsert(spec.clone(), now) {
            Ok(c) => c,
            Err(CacheError::Full { capacity }) => {
                self.restore_ipsec(spec.hoa, previous.as_ref()).await;
                return Err(ApplyError::Full { capacity });
            }
        };
        if let Err(e) = self.write_maps(&spec, &change) {
            self.undo_maps(&spec, &change);
            self.restore_ipsec(spec.hoa, previous.as_ref()).await;
            return Err(ApplyError::Failed(e));
        }
        // 3. The kernel: routes for mobile network prefixes (home agent role).
        let old: &[(Ipv6Addr, u8)] = previous.as_ref().map_or(&[], |p| &p.prefixes);
        let moved_link = previous
            .as_ref()
            .is_some_and(|p| p.home_ifindex != spec.home_ifindex);
        let (added, dropped): (Vec<_>, Vec<_>) = if moved_link {
            (spec.prefixes.clone(), old.to_vec())
        } else {
            (
                spec.prefixes
                    .iter()
                    .filter(|p| !old.contains(p))
                    .copied()
                    .collect(),
                old.iter()
                    .filter(|p| !spec.prefixes.contains(p))
                    .copied()
                    .collect(),
            )
        };
        if self.role == Role::HomeAgent {
            if moved_link || !dropped.is_empty() {
                // Old routes first: a moved binding re-adds the same destinations.
                let prev = previous
                    .as_ref()
                    .expect("dropped routes have a previous binding");
                for &p in &dropped {
                    self.drop_route(self.prefix_route(prev, p)).await;
                }
            }
            let mut done = Vec::new();
            for &p in &added {
                let r = self.prefix_route(&spec, p);
                if let Err(e) = self.kernel.add_route(&r).await {
                    for r in done {
                        self.drop_route(r).await;
                    }
                    if let Some(prev) = &previous {
                        for &p in &dropped {
                            let _ = self.kernel.add_route(&self.prefix_route(prev, p)).await;
                        }
                    }
                    self.undo_maps(&spec, &change);
                    self.restore_ipsec(spec.hoa, previous.as_ref()).await;
                    return Err(ApplyError::Failed(e.context(format!(
                        "routing mobile network prefix {}/{} to {}",
                        p.0, p.1, spec.hoa
                    ))));
                }
                done.push(r);
            }
        }
        for p in &dropped {
            self.prefix_owner.remove(p);
        }
        for &p in &spec.prefixes {
            self.prefix_owner.insert(p, spec.hoa);
        }
        if let (Role::MobileNode, Some(prev)) = (self.role, &previous)
            && prev.coa != spec.coa
        {
            self.release_local(prev.coa);
        }
        Ok(match change {
            Change::Created { id, .. } => Applied::Created { id },
            Change::Updated { id, previous } => Applied::Updated { id, previous },
        })
    }

    async fn remove(&mut self, hoa: Ipv6Addr) -> Result<Applied, ApplyError> {
        if self.cache.get(&hoa).is_none() {
            return Err(ApplyError::NotBound(hoa));
        }
        // The record first: a binding removed must not come back with the next daemon.
        if let Err(e) = self.dataplane.remove_record(hoa) {
            return Err(ApplyError::Failed(e.context("removing the binding record")));
        }
        let b = self.cache.remove(&hoa).expect("checked above");
        // Forwarding stops first; the rest cannot bring it back.
        if let Err(e) = self.dataplane.remove_binding(hoa) {
            tracing::error!(%hoa, error = %format!("{e:#}"), "removing the binding from the data plane failed");
        }

        for &p in &b.spec.prefixes {
            if let Err(e) = self.dataplane.remove_prefix(p.0, p.1) {
                tracing::error!(%hoa, error = %format!("{e:#}"), "removing a mobile network prefix from the data plane failed");
            }
            self.prefix_owner.remove(&p);
            if self.role == Role::HomeAgent {
                self.drop_route(self.prefix_route(&b.spec, p)).await;
            }
        }
        if let Err(e) = self.follow_ipsec(hoa, None).await {
            tracing::error!(%hoa, error = %format!("{e:#}"), "removing the binding's IPsec tunnel policies failed");
        }
        match self.role {
            Role::HomeAgent => {
                // The kernel's neighbour entry for the HoA points at us if the TC program
                // answered one of its solicitations: the HoA may be back on the home link.
                match self.dataplane.take_nd_seen(hoa) {
                    Ok(true) => {
                        if let Err(e) = self.kernel.del_neighbour(b.spec.home_ifindex, hoa).await {
                            tracing::warn!(%hoa, error = %format!("{e:#}"), "removing the neighbour entry failed");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%hoa, error = %format!("{e:#}"), "reading HA_ND_SEEN failed")
                    }
                }
            }
            Role::MobileNode => self.release_local(b.spec.coa),
        }
        Ok(Applied::Removed(b))
    }

    /// Mobile node: stops terminating tunnels at `coa` unless a binding still uses it.
    fn release_local(&mut self, coa: Ipv6Addr) {
        if !self.cache.iter().any(|o| o.spec.coa == coa)
            && let Err(e) = self.dataplane.remove_local_address(coa)
        {
            tracing::warn!(%coa, error = %format!("{e:#}"), "removing a tunnel endpoint failed");
        }
    }

    fn prefix_route(&self, spec: &BindingSpec, (prefix, len): (Ipv6Addr, u8)) -> OwnedRoute {
        let mtu = self.link(spec.home_ifindex).map_or(1500, |l| l.mtu);
        OwnedRoute {
            prefix,
            len,
            gateway: Some(spec.hoa),
            ifindex: spec.home_ifindex,
            mtu: Some(tunnel_mtu(mtu)),
        }
    }

    /// Removes a route of ours; a failure is logged and tried again at shutdown.
    async fn drop_route(&mut self, r: OwnedRoute) {
        if let Err(e) = self.kernel.del_route(&r).await {
            tracing::error!(prefix = %r.prefix, len = r.len, error = %format!("{e:#}"), "removing a route failed; trying again at shutdown");
            self.leftovers.push(r);
        }
    }

    fn entry(&self, spec: &BindingSpec, id: u32) -> BindingEntry {
        let (local, remote) = match self.role {
            Role::HomeAgent => (spec.ha_address, spec.coa),
            Role::MobileNode => (spec.coa, spec.ha_address),
        };
        let ipsec = if self.ipsec_payload(&spec.hoa) {
            BINDING_F_IPSEC_PAYLOAD
        } else {
            0
        };
        BindingEntry {
            local: local.octets(),
            remote: remote.octets(),
            flags: spec.flags | ipsec,
            binding_id: id,
            home_ifindex: match self.role {
                Role::HomeAgent => spec.home_ifindex,
                Role::MobileNode => 0,
            },
            _pad: 0,
        }
    }

    fn write_maps(&mut self, spec: &BindingSpec, change: &Change) -> anyhow::Result<()> {
        let id = match change {
            Change::Created { id, .. } | Change::Updated { id, .. } => *id,
        };
        // A fresh id's counters are zero already (one syscall fewer per new binding).
        if let Change::Created { reused: true, .. } = change {
            self.dataplane.reset_binding_counters(id)?;
        }
        if self.role == Role::MobileNode {
            // The MN terminates the tunnel at its care-of address.
            self.dataplane.add_local_address(spec.coa)?;
        }
        // In place: a CoA change rewrites the entry, so the HoA is never unforwarded.
        let entry = self.entry(spec, id);
        // The record first: the next daemon must know every binding a map entry holds, and
        // every sequence number acknowledged (the BA leaves after this returns).
        let record = record_of(
            self.cache.get(&spec.hoa).expect("just upserted"),
            Instant::now(),
        );
        self.dataplane.put_record(&record)?;
        self.dataplane.set_binding(spec.hoa, &entry)?;
        if let Change::Updated { previous, .. } = change {
            for &(p, l) in &previous.prefixes {
                if !spec.prefixes.contains(&(p, l)) {
                    self.dataplane.remove_prefix(p, l)?;
                }
            }
        }
        for &(p, l) in &spec.prefixes {
            self.dataplane.set_prefix(p, l, &entry)?;
        }
        Ok(())
    }

    /// Undoes `upsert` and `write_maps` after a failure.
    fn undo_maps(&mut self, spec: &BindingSpec, change: &Change) {
        match change {
            Change::Created { .. } => {
                self.cache.remove(&spec.hoa);
                let _ = self.dataplane.remove_record(spec.hoa);
                let _ = self.dataplane.remove_binding(spec.hoa);
                for &(p, l) in &spec.prefixes {
                    let _ = self.dataplane.remove_prefix(p, l);
                }
                if self.role == Role::MobileNode {
                    self.release_local(spec.coa);
                }
            }
            Change::Updated { previous, id } => {
                let _ = self.cache.upsert(previous.clone(), Instant::now());
                if let Some(b) = self.cache.get(&previous.hoa) {
                    let _ = self.dataplane.put_record(&record_of(b, Instant::now()));
                }
                let entry = self.entry(previous, *id);
                let _ = self.dataplane.set_binding(previous.hoa, &entry);
                for &(p, l) in &spec.prefixes {
                    if !previous.prefixes.contains(&(p, l)) {
                        let _ = self.dataplane.remove_prefix(p, l);
                    }
                }
                for &(p, l) in &previous.prefixes {
                    let _ = self.dataplane.set_prefix(p, l, &entry);
                }
            }
        }
    }

    async fn follow_ipsec(
        &mut self,
        hoa: Ipv6Addr,
        to: Option<(Ipv6Addr, &[(Ipv6Addr, u8)])>,
    ) -> anyhow::Result<()> {
        let Some(x) = self.ipsec.as_mut() else {
            return Ok(());
        };
        self.tunnels
            .follow(x, &self.ipsec_sets, Side::of(self.role), hoa, to)
            .await
    }

    /// After a failed change of `hoa`'s binding: point its IPsec tunnel at what it was.
    async fn restore_ipsec(&mut self, hoa: Ipv6Addr, previous: Option<&BindingSpec>) {
        let result = match previous {
            Some(p) => self.follow_ipsec(hoa, Some((p.coa, &p.prefixes))).await,
            None => self.follow_ipsec(hoa, None).await,
        };
        if let Err(e) = result {
            tracing::error!(%hoa, error = %format!("{e:#}"), "restoring the IPsec tunnel policies failed");
        }
    }

    /// Home agent: tells the TC program where an ESP-protected BA for `hoa` goes when its
    /// binding does not say (a refusal): `coa` wins over the binding until forgotten.
    pub fn set_signal_coa(&mut self, hoa: Ipv6Addr, coa: Ipv6Addr) -> anyhow::Result<()> {
        self.dataplane.set_signal_coa(hoa, coa)?;
        self.signal_coas.insert(hoa, coa);
        Ok(())
    }

    /// Removes `hoa`'s signalling CoA if it still is `coa` (another refusal may have replaced
    /// it).
    pub fn forget_signal_coa(&mut self, hoa: Ipv6Addr, coa: Ipv6Addr) {
        if self.signal_coas.get(&hoa) == Some(&coa) {
            self.signal_coas.remove(&hoa);
            let _ = self.dataplane.remove_signal_coa(hoa);
        }
    }

    /// Home agent: a neighbour entry for `hoa` (without a binding) on `ifindex` pointing at
    /// this node, for the one ESP-protected refusal it is about to send: xfrm needs the packet
    /// routed out of the home link, where the TC program adds the RH2 and redirects it.
    pub async fn route_refusal(&mut self, hoa: Ipv6Addr, ifindex: u32) -> anyhow::Result<()> {
        let mac = self
            .link(ifindex)
            .map(|l| l.mac)
            .ok_or_else(|| anyhow!("interface {ifindex} is not served"))?;
        self.kernel.add_neighbour(ifindex, hoa, mac).await?;
        self.refusal_neighbours.insert((ifindex, hoa));
        Ok(())
    }

    /// Removes the neighbour entry of [`route_refusal`](Self::route_refusal) — unless a
    /// registration of the HoA started meanwhile.
    pub async fn unroute_refusal(&mut self, hoa: Ipv6Addr, ifindex: u32) {
        if !self.refusal_neighbours.remove(&(ifindex, hoa)) || self.cache.get(&hoa).is_some() {
            return;
        }
        if let Err(e) = self.kernel.del_neighbour(ifindex, hoa).await {
            tracing::warn!(%hoa, error = %format!("{e:#}"), "removing the neighbour entry of a protected refusal failed");
        }
    }

    /// Removes everything this instance installed in the kernel: IPsec policies and SAs,
    /// routes, neighbour entries pointing at our MACs, allmulti. The maps and programs go with
    /// the data plane when it is dropped.
    pub async fn shutdown(&mut self) {
        if let Some(mut x) = self.ipsec.take()
            && let Err(e) = x.remove_all().await
        {
            tracing::warn!(error = %format!("{e:#}"), "removing IPsec policies failed");
        }
        let mut routes = std::mem::take(&mut self.leftovers);
        routes.append(&mut self.home_routes);
        if self.role == Role::HomeAgent {
            for b in self.cache.iter() {
                for &p in &b.spec.prefixes {
                    routes.push(self.prefix_route(&b.spec, p));
                }
            }
        }
        for r in &routes {
            if let Err(e) = self.kernel.del_route(r).await {
                tracing::warn!(prefix = %r.prefix, len = r.len, error = %format!("{e:#}"), "removing a route failed");
            }
        }
        if self.role == Role::HomeAgent {
            match self.sweep_neighbours().await {
                Ok(n) if n > 0 => tracing::info!(entries = n, "neighbour entries removed"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "removing neighbour entries failed")
                }
            }
        }
        for ifindex in std::mem::take(&mut self.allmulti) {
            if let Err(e) = self.kernel.set_allmulti(ifindex, false).await {
                tracing::warn!(ifindex, error = %format!("{e:#}"), "turning allmulti off failed");
            }
        }
    }
}

/// IPsec policies from the `IPsecPolicySet`s, then a check that the kernel can do ESP at all,
/// then the manually keyed SAs. A failure removes what was installed.
async fn start_ipsec(
    config: &Config,
    adopted: bool,
    moved: &HashMap<Ipv6Addr, Ipv6Addr>,
) -> anyhow::Result<Ipsec> {
    let mut ipsec = Ipsec::new()?;
    ipsec.set_replace(adopted);
    if let Err(e) = install_ipsec(&mut ipsec, config, moved).await {
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

async fn install_ipsec(
    ipsec: &mut Ipsec,
    config: &Config,
    moved: &HashMap<Ipv6Addr, Ipv6Addr>,
) -> anyhow::Result<()> {
    let at = |a: Ipv6Addr| moved.get(&a).copied().unwrap_or(a);
    let side = Side::of(config.role);
    let mut policies = ipsec::nd_bypass_policies();
    for set in &config.ipsec.sets {
        policies.extend(ipsec::transport_policies(set, side)?);
    }
    for p in &policies {
        ipsec.install(p).await?;
    }
    ipsec.probe_esp().await?;
    for sa in &config.ipsec.manual_sas {
        ipsec.install_sa(sa, at).await?;
    }
    if let Some(path) = &config.ipsec.sa_file {
        let f = crate::config::setkey::parse_file(path).map_err(|e| anyhow!("{e}"))?;
        for w in &f.warnings {
            tracing::warn!("{w}");
        }
        for sa in &f.sas {
            ipsec.install_sa(sa, at).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_brings_back_the_binding_it_was_written_for() {
        let now = Instant::now();
        let b = Binding {
            spec: BindingSpec {
                hoa: "2001:db8:bee5::dead:face".parse().unwrap(),
                coa: "2001:db8:f00d::1".parse().unwrap(),
                ha_address: "2001:db8:bee5::c001:babe".parse().unwrap(),
                home_ifindex: 3,
                sequence: 65535,
                lifetime: Some(std::time::Duration::from_secs(400)),
                flags: ha_common::abi::BINDING_F_MOBILE_ROUTER,
                prefixes: vec![("2001:db8:100::".parse().unwrap(), 48)],
                origin: Origin::Registered,
            },
            id: 77,
            registered_at: now,
            expires_at: Some(now + std::time::Duration::from_secs(400)),
        };
        let r = record_of(&b, now);
        // Another process reads it 100 s later on the shared boot clock.
        let later = now + std::time::Duration::from_secs(100);
        let boot_later = r.registered_ns + 100_000_000_000;
        let back = binding_of(&r, b.spec.prefixes.clone(), later, boot_later);
        assert_eq!(back.spec, b.spec);
        assert_eq!(back.id, 77);
        let left = back.expires_at.unwrap().duration_since(later).as_secs_f64();
        assert!((299.0..=300.0).contains(&left), "{left}");
        // A static binding without expiry stays without.
        let mut s = b.clone();
        s.spec.origin = Origin::Static;
        s.spec.lifetime = None;
        s.expires_at = None;
        let r = record_of(&s, now);
        assert_eq!(r.expires_ns, NEVER_EXPIRES);
        let back = binding_of(&r, s.spec.prefixes.clone(), later, boot_later);
        assert_eq!((back.spec.origin, back.expires_at), (Origin::Static, None));
    }
}
