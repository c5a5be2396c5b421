//! The kernel's side of each binding, through rtnetlink (never by running `ip`):
//!
//! - a **proxy neighbour** entry for the HoA on the home link, so the kernel answers Neighbor
//!   Solicitations for it with our MAC (RFC 6275 §10.4.1) and traffic for the HoA reaches
//!   the XDP program;
//! - a **permanent neighbour** entry and a **host route** for the HoA (and a route for each
//!   mobile network prefix via the HoA), whose MTU is the tunnel MTU, so what the kernel
//!   itself sends or forwards to the HoA leaves through the home-link interface — where the
//!   TC egress program tunnels it — sized to fit the tunnel.
//!
//! Routes carry our own protocol number, so operators (and `ip route show proto 0xa6`) can
//! tell them apart.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
        route::{RouteAttribute, RouteMetric, RouteProtocol},
    },
};

/// rtnetlink route protocol of the routes hagent installs.
pub const ROUTE_PROTOCOL: u8 = 0xa6;
/// `RTAX_MTU`: locking it makes the FIB (and `bpf_fib_lookup`) honour the route MTU.
const RTAX_MTU: u32 = 2;

/// What the kernel needs for one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelBinding {
    pub hoa: Ipv6Addr,
    pub ifindex: u32,
    /// MAC of the home-link interface (the permanent neighbour entry's address).
    pub mac: [u8; 6],
    /// MTU for the HoA's routes: the tunnel MTU.
    pub mtu: u32,
    pub prefixes: Vec<(Ipv6Addr, u8)>,
    /// Answer Neighbor Solicitations for the HoA (home agent role).
    pub proxy: bool,
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

    /// Installs the proxy entry, neighbour entry and routes (replacing what is there).
    pub async fn install(&self, b: &KernelBinding) -> anyhow::Result<()> {
        if b.proxy {
            self.handle
                .neighbours()
                .add(b.ifindex, IpAddr::V6(b.hoa))
                .flags(NeighbourFlags::Proxy)
                .replace()
                .execute()
                .await
                .with_context(|| format!("adding the proxy neighbour entry for {}", b.hoa))?;
        }
        self.handle
            .neighbours()
            .add(b.ifindex, IpAddr::V6(b.hoa))
            .link_layer_address(&b.mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding the neighbour entry for {}", b.hoa))?;
        self.route(b.hoa, 128, None, b.ifindex, b.mtu, true)
            .await
            .with_context(|| format!("adding the host route for {}", b.hoa))?;
        for &(prefix, len) in &b.prefixes {
            self.route(prefix, len, Some(b.hoa), b.ifindex, b.mtu, true)
                .await
                .with_context(|| format!("adding the route for {prefix}/{len} via {}", b.hoa))?;
        }
        Ok(())
    }

    /// Removes what [`install`](Self::install) added; entries already gone are fine.
    pub async fn remove(&self, b: &KernelBinding) -> anyhow::Result<()> {
        let mut first_error = None;
        for &(prefix, len) in &b.prefixes {
            if let Err(e) = self
                .route(prefix, len, Some(b.hoa), b.ifindex, b.mtu, false)
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.route(b.hoa, 128, None, b.ifindex, b.mtu, false).await {
            first_error.get_or_insert(e);
        }
        for proxy in [false, true] {
            if proxy && !b.proxy {
                continue;
            }
            let mut msg = NeighbourMessage::default();
            msg.header.family = AddressFamily::Inet6;
            msg.header.ifindex = b.ifindex;
            if proxy {
                msg.header.flags = NeighbourFlags::Proxy;
            }
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
                    b.hoa,
                )));
            if let Err(e) = self.handle.neighbours().del(msg).execute().await
                && !is_not_found(&e)
            {
                first_error.get_or_insert(anyhow::Error::from(e).context(format!(
                    "removing the {}neighbour entry for {}",
                    if proxy { "proxy " } else { "" },
                    b.hoa
                )));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn route(
        &self,
        dst: Ipv6Addr,
        len: u8,
        via: Option<Ipv6Addr>,
        ifindex: u32,
        mtu: u32,
        add: bool,
    ) -> anyhow::Result<()> {
        let mut builder = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(dst, len)
            .output_interface(ifindex)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
        if let Some(gw) = via {
            builder = builder.gateway(gw);
        }
        let mut msg = builder.build();
        msg.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Lock(1 << RTAX_MTU),
            RouteMetric::Mtu(mtu),
        ]));
        if add {
            self.handle.route().add(msg).replace().execute().await?;
        } else if let Err(e) = self.handle.route().del(msg).execute().await
            && !is_not_found(&e)
        {
            return Err(e.into());
        }
        Ok(())
    }

    /// Adds `addr/len` to `ifindex` without DAD. Ok(false) if it was there already.
    pub async fn add_address(&self, ifindex: u32, addr: Ipv6Addr, len: u8) -> anyhow::Result<bool> {
        use rtnetlink::packet_route::address::{
            AddressAttribute, AddressFlags, AddressHeaderFlags,
        };
        let mut req = self.handle.address().add(ifindex, IpAddr::V6(addr), len);
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
        match self.handle.address().del(msg).execute().await {
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

    /// Removes every route with our protocol number (left over by a daemon that died).
    pub async fn flush_stale_routes(&self) -> anyhow::Result<usize> {
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute();
        let mut stale = Vec::new();
        while let Some(r) = routes.try_next().await? {
            if r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL) {
                stale.push(r);
            }
        }
        let n = stale.len();
        for r in stale {
            if let Err(e) = self.handle.route().del(r).execute().await
                && !is_not_found(&e)
            {
                return Err(e.into());
            }
        }
        Ok(n)
    }
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
