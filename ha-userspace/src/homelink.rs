//! The kernel state hagent owns, through rtnetlink (never by running `ip`). Per binding there
//! is none in the home agent role: the XDP program answers Neighbor Solicitations for bound
//! home addresses and the TC program tunnels what the kernel sends them (see `docs/design.md`).
//! What remains:
//!
//! - a **route** per mobile network prefix (NEMO) via the mobile router's HoA, and one per
//!   served home prefix that is not on-link on its home link (`home_agent.home_prefixes`), so
//!   what the kernel itself sends or forwards to them leaves through the home link, where the
//!   TC egress program tunnels it. Added exclusively: an existing route — the operator's, the
//!   default route — is never replaced;
//! - **neighbour entries** on the home links pointing at this node's own MAC: the kernel makes
//!   them when the TC program answers its solicitations for a bound HoA (they age out by
//!   themselves), and hagent adds one for the duration of an ESP-protected refusal. Removed
//!   when their binding goes, and swept at start-up and shutdown;
//! - **allmulti** on the home links, so solicited-node multicast for every home address
//!   reaches the XDP program without a multicast group per binding.
//!
//! Routes carry our own protocol number, so operators (and `ip route show proto 0xa6`) can
//! tell them apart, and a daemon that died leaves nothing the next one cannot find.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
        route::{RouteAddress, RouteAttribute, RouteMetric, RouteProtocol},
    },
};

/// rtnetlink route protocol of the routes hagent installs.
pub const ROUTE_PROTOCOL: u8 = 0xa6;
/// `RTAX_MTU`: locking it makes the FIB (and `bpf_fib_lookup`) honour the route MTU.
const RTAX_MTU: u32 = 2;

/// A route hagent owns: `prefix/len` out of `ifindex`, via `gateway` when set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnedRoute {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub gateway: Option<Ipv6Addr>,
    pub ifindex: u32,
    /// Locked route MTU, if any.
    pub mtu: Option<u32>,
}

/// Requests this process made over rtnetlink (every [`HomeLink`]), for `hagent stats`: the
/// measure of kernel work per binding.
pub static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counted() {
    REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// An rtnetlink handle (the connection task runs on the tokio runtime).
#[derive(Clone)]
pub struct HomeLink {
    handle: Handle,
}

impl HomeLink {
    /// Opens an rtnetlink connection.
    pub fn new() -> anyhow::Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening rtnetlink")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    fn handle(&self) -> &Handle {
        counted();
        &self.handle
    }

    /// Adds `r`; fails if a route for the same destination exists (anyone's: the kernel's
    /// `NLM_F_EXCL` check), so hagent never replaces a route it does not own.
    pub async fn add_route(&self, r: &OwnedRoute) -> anyhow::Result<()> {
        match self.handle().route().add(route_message(r)).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {
                anyhow::bail!(
                    "a route for {}/{} exists already (not replaced)",
                    r.prefix,
                    r.len
                )
            }
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("adding the route for {}/{}", r.prefix, r.len))),
        }
    }

    /// Removes `r` — only ours: the kernel matches the protocol number. Gone already is fine.
    pub async fn del_route(&self, r: &OwnedRoute) -> anyhow::Result<()> {
        match self.handle().route().del(route_message(r)).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("removing the route for {}/{}", r.prefix, r.len))),
        }
    }

    /// A permanent neighbour entry `addr` → `mac` on `ifindex` (replacing the kernel's own).
    pub async fn add_neighbour(
        &self,
        ifindex: u32,
        addr: Ipv6Addr,
        mac: [u8; 6],
    ) -> anyhow::Result<()> {
        self.handle()
            .neighbours()
            .add(ifindex, IpAddr::V6(addr))
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding the neighbour entry for {addr}"))
    }

    /// Removes the neighbour entry for `addr` on `ifindex`; gone already is fine.
    pub async fn del_neighbour(&self, ifindex: u32, addr: Ipv6Addr) -> anyhow::Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.ifindex = ifindex;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
                addr,
            )));
        match self.handle().neighbours().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                Err(anyhow::Error::from(e)
                    .context(format!("removing the neighbour entry for {addr}")))
            }
        }
    }

    /// Removes the IPv6 neighbour entries on the links `(ifindex, mac)` that point at that
    /// interface's own MAC: entries only hagent makes (by answering the kernel's solicitations,
    /// or for a protected refusal). One dump; returns how many.
    pub async fn sweep_neighbours(
        &self,
        links: &[(u32, [u8; 6])],
        keep: impl Fn(&Ipv6Addr) -> bool,
    ) -> anyhow::Result<usize> {
        let mut dump = self
            .handle()
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet6)
            .execute();
        let mut ours = Vec::new();
        while let Some(n) = dump.try_next().await.context("listing neighbour entries")? {
            let Some(&(ifindex, mac)) = links.iter().find(|(i, _)| *i == n.header.ifindex) else {
                continue;
            };
            let lladdr = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => Some(l.clone()),
                _ => None,
            });
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(d)) => Some(*d),
                _ => None,
            });
            if let (Some(l), Some(d)) = (lladdr, dst)
                && l == mac
                && !keep(&d)
            {
                ours.push((ifindex, d));
            }
        }
        for &(ifindex, addr) in &ours {
            self.del_neighbour(ifindex, addr).await?;
        }
        Ok(ours.len())
    }

    /// Turns allmulti on for `ifindex` (`name`); returns whether it was off (so the caller
    /// turns it off again at shutdown, and only then).
    pub async fn enable_allmulti(&self, ifindex: u32, name: &str) -> anyhow::Result<bool> {
        if crate::system::allmulti(name) {
            return Ok(false);
        }
        self.set_allmulti(ifindex, true)
            .await
            .with_context(|| format!("turning on allmulti on {name}"))?;
        Ok(true)
    }

    /// Sets or clears allmulti on `ifindex`.
    pub async fn set_allmulti(&self, ifindex: u32, on: bool) -> anyhow::Result<()> {
        let msg = LinkUnspec::new_with_index(ifindex).allmulticast(on).build();
        Ok(self.handle().link().set(msg).execute().await?)
    }

    /// Adds `addr/len` to `ifindex` without DAD. Ok(false) if it was there already.
    pub async fn add_address(&self, ifindex: u32, addr: Ipv6Addr, len: u8) -> anyhow::Result<bool> {
        use rtnetlink::packet_route::address::{
            AddressAttribute, AddressFlags, AddressHeaderFlags,
        };
        let mut req = self.handle().address().add(ifindex, IpAddr::V6(addr), len);
        let msg = req.message_mut();
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(false),
            Err(e) => Err(anyhow::Error::from(e).context(format!("adding {addr}/{len}"))),
        }
    }

    /// Removes `addr/len` from `ifindex` (gone already is fine).
    pub async fn del_address(&self, ifindex: u32, addr: Ipv6Addr, len: u8) -> anyhow::Result<()> {
        use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.index = ifindex;
        msg.header.prefix_len = len;
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V6(addr)));
        match self.handle().address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if is_not_found(&e)
                    || matches!(&e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EADDRNOTAVAIL) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::from(e).context(format!("removing {addr}/{len}"))),
        }
    }

    /// Makes the routes with our protocol number out of `ifindexes` (this instance's links:
    /// another instance's routes are never touched) what `desired` says: removes the others
    /// (an earlier daemon's, any version) and returns the desired routes that are missing.
    pub async fn reconcile_routes(
        &self,
        ifindexes: &[u32],
        desired: &[OwnedRoute],
    ) -> anyhow::Result<(usize, Vec<OwnedRoute>)> {
        let mut routes = self
            .handle()
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute();
        let mut stale = Vec::new();
        let mut present = std::collections::HashSet::new();
        while let Some(r) = routes.try_next().await? {
            if r.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let Some(oif) = oif.filter(|i| ifindexes.contains(i)) else {
                continue;
            };
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet6(d)) => Some(*d),
                _ => None,
            });
            let gateway = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(*g),
                _ => None,
            });
            let dst = dst.unwrap_or(Ipv6Addr::UNSPECIFIED);
            let len = r.header.destination_prefix_length;
            match desired.iter().find(|d| {
                d.prefix == dst && d.len == len && d.ifindex == oif && d.gateway == gateway
            }) {
                Some(d) => {
                    present.insert(*d);
                }
                None => stale.push(r),
            }
        }
        let n = stale.len();
        for r in stale {
            if let Err(e) = self.handle().route().del(r).execute().await
                && !is_not_found(&e)
            {
                return Err(e.into());
            }
        }
        let missing = desired
            .iter()
            .filter(|d| !present.contains(d))
            .copied()
            .collect();
        Ok((n, missing))
    }

    /// Removes proxy ND entries on `ifindexes` for addresses `ours` says belong to us (the
    /// home prefixes): hagent answers for bound home addresses in XDP, so such an entry is
    /// an older hagent's (which proxied per binding) and would answer for addresses that are
    /// not bound (a black hole).
    pub async fn sweep_proxies(
        &self,
        ifindexes: &[u32],
        ours: impl Fn(&Ipv6Addr) -> bool,
    ) -> anyhow::Result<usize> {
        let mut dump = self
            .handle()
            .neighbours()
            .get()
            .proxies()
            .set_address_family(AddressFamily::Inet6)
            .execute();
        let mut stale = Vec::new();
        while let Some(n) = dump.try_next().await.context("listing proxy ND entries")? {
            if !ifindexes.contains(&n.header.ifindex) {
                continue;
            }
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(d)) => Some(*d),
                _ => None,
            });
            if dst.is_some_and(|d| ours(&d)) {
                stale.push(n);
            }
        }
        let count = stale.len();
        for n in stale {
            match self.handle().neighbours().del(n).execute().await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(anyhow::Error::from(e).context("removing a proxy ND entry")),
            }
        }
        Ok(count)
    }
}

fn route_message(r: &OwnedRoute) -> rtnetlink::packet_route::route::RouteMessage {
    let mut builder = RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(r.prefix, r.len)
        .output_interface(r.ifindex)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
    if let Some(gw) = r.gateway {
        builder = builder.gateway(gw);
    }
    let mut msg = builder.build();
    if let Some(mtu) = r.mtu {
        msg.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Lock(1 << RTAX_MTU),
            RouteMetric::Mtu(mtu),
        ]));
    }
    msg
}

fn is_not_found(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.raw_code() == -libc::ENOENT || m.raw_code() == -libc::ESRCH)
}

/// What a routing event touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingEvent {
    /// An IPv6 address came or went (home prefixes may have changed).
    Address,
    /// A route, neighbour or link changed.
    Other,
}

/// Watches routes, neighbours, links and addresses, and calls `on_change` for every event: the
/// data plane's cached next hops must not outlive the state they were derived from.
pub async fn watch_routing(mut on_change: impl FnMut(RoutingEvent) + Send) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use rtnetlink::MulticastGroup;
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv6Ifaddr,
    ])
    .context("subscribing to rtnetlink route/neighbour/link events")?;
    tokio::spawn(conn);
    while let Some((msg, _)) = messages.next().await {
        use rtnetlink::packet_core::NetlinkPayload;
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let kind = match msg.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_),
            ) => RoutingEvent::Address,
            _ => RoutingEvent::Other,
        };
        on_change(kind);
    }
    Ok(())
}
