//! Map keys and values shared by the eBPF programs and the daemon.
//!
//! Addresses are `[u8; 16]` in network byte order. Every struct is `#[repr(C)]` with explicit
//! padding and a size assertion: the two sides are compiled separately and must agree.

/// An IPv6 address in network byte order.
pub type Ipv6Addr = [u8; 16];

/// Payload for this binding must be protected by the kernel's IPsec (xfrm) policies, so the
/// XDP program passes it to the kernel instead of tunnelling it itself.
pub const BINDING_F_IPSEC_PAYLOAD: u32 = 1 << 0;
/// The binding belongs to a mobile router (NEMO, RFC 3963).
pub const BINDING_F_MOBILE_ROUTER: u32 = 1 << 1;

/// `SO_MARK` of the daemon's Mobility Header socket when a BU (mobile node) or BA (home agent)
/// must leave with a Home Address option or a type 2 routing header. Such signalling is sent
/// through the kernel's stack — not built whole on a raw socket — so that xfrm can protect it
/// with ESP (RFC 3776); the TC egress program then adds the header a kernel without
/// `CONFIG_IPV6_MIP6` cannot (ASCII "mip6").
pub const SIGNALLING_MARK: u32 = 0x6d69_7036;

/// A binding cache entry as the data plane sees it (value of the HoA hash map and of the
/// mobile-network-prefix LPM trie).
///
/// In the home agent role, `local` is the HA address the mobile node registered with (the
/// outer source of the tunnel) and `remote` its primary care-of address (outer destination).
/// In the mobile node role, `local` is the MN's care-of address and `remote` its home agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingEntry {
    /// This node's tunnel endpoint: the HA address (HA role) or the CoA (MN role).
    pub local: Ipv6Addr,
    /// The peer's tunnel endpoint: the CoA (HA role) or the HA address (MN role).
    pub remote: Ipv6Addr,
    /// `BINDING_F_*`.
    pub flags: u32,
    /// Index into the per-binding counter array.
    pub binding_id: u32,
    /// Home agent role: the interface of the HoA's home link. The data plane answers Neighbor
    /// Solicitations for the HoA only when they arrive there (RFC 6275 §10.4.1). 0 in the
    /// mobile node role.
    pub home_ifindex: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<BindingEntry>() == 48);

/// An interface the programs are attached to (value of [`crate::maps::IFACES`], keyed by
/// ifindex): what they need to answer Neighbor Solicitations on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    pub mac: [u8; 6],
    /// `XDP_MODE_*` the program is attached in, and the one asked for (for the next daemon:
    /// a link does not say; the programs ignore both).
    pub xdp_mode: u8,
    pub xdp_requested: u8,
}

/// `Iface::xdp_requested`: auto.
pub const XDP_MODE_AUTO: u8 = 3;
/// `Iface::xdp_mode`: native (driver) mode.
pub const XDP_MODE_NATIVE: u8 = 1;
/// `Iface::xdp_mode`: generic (skb) mode.
pub const XDP_MODE_GENERIC: u8 = 2;
const _: () = assert!(core::mem::size_of::<Iface>() == 8);

/// Value of a [`crate::maps::DAD`] entry: Duplicate Address Detection for the key is running
/// and nobody has claimed the address yet.
pub const DAD_PROBING: u32 = 0;
/// Value of a [`crate::maps::DAD`] entry: during the probe the XDP program saw a Neighbor
/// Advertisement for the address, or another node's DAD probe for it (RFC 4862 §5.4.3-5.4.4).
pub const DAD_CONFLICT: u32 = 1;

/// Key of the mobile network prefix LPM trie: the layout of `struct bpf_lpm_trie_key` with an
/// IPv6 address (aya's `lpm_trie::Key<[u8; 16]>` has the same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixKey {
    pub prefix_len: u32,
    pub addr: Ipv6Addr,
}
const _: () = assert!(core::mem::size_of::<PrefixKey>() == 20);

/// A next hop learned from `bpf_fib_lookup` for one tunnel destination, valid while `epoch`
/// equals the current next-hop epoch (which the daemon bumps on every route, neighbour or
/// link change, invalidating all cached next hops at once).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub epoch: u64,
    pub ifindex: u32,
    /// MTU of the path to the tunnel destination (outer packet), from the FIB.
    pub mtu: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<NextHop>() == 32);

/// Per-binding counters (per CPU), indexed by [`BindingEntry::binding_id`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingCounters {
    /// Packets (and their inner bytes) tunnelled towards the mobile node.
    pub tunnelled_packets: u64,
    pub tunnelled_bytes: u64,
    /// Reverse-tunnelled packets (and inner bytes) accepted from the mobile node.
    pub reverse_packets: u64,
    pub reverse_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<BindingCounters>() == 32);

/// Per-CPU token bucket for ICMPv6 errors the data plane generates (RFC 4443 §2.4(f)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub last_ns: u64,
    pub tokens: u64,
}
const _: () = assert!(core::mem::size_of::<RateLimit>() == 16);

/// Largest inner packet handed to the daemon's slow path (RFC 2473 §7.1: only packets of at
/// most the IPv6 minimum MTU are fragmented after encapsulation).
pub const PUNT_MAX_PACKET: usize = 1280;

/// Why a packet was handed to the daemon.
pub const PUNT_REASON_FRAGMENT: u32 = 1;
/// A Home Address option without a binding (RFC 6275 §9.3.1): `packet` holds the source at
/// bytes 8..24 and the destination at 24..40 (as in an IPv6 header), the option's home address
/// at 40..56; `len` is [`PUNT_HAO_LEN`]. The daemon answers with a Binding Error, status 1.
pub const PUNT_REASON_HAO_NO_BINDING: u32 = 2;
pub const PUNT_HAO_LEN: usize = 56;

/// A packet handed from the data plane to the daemon through the punt ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PuntRecord {
    pub reason: u32,
    /// Length of the valid part of `packet`.
    pub len: u32,
    pub binding: BindingEntry,
    /// The inner IPv6 packet (hop limit already decremented).
    pub packet: [u8; PUNT_MAX_PACKET],
}
const _: () = assert!(core::mem::size_of::<PuntRecord>() == 8 + 48 + PUNT_MAX_PACKET);

/// `BindingRecord::origin`: added by the operator.
pub const ORIGIN_STATIC: u8 = 0;
/// `BindingRecord::origin`: registered by a mobile node.
pub const ORIGIN_REGISTERED: u8 = 1;
/// `BindingRecord::expires_ns` of a binding that never expires.
pub const NEVER_EXPIRES: u64 = u64::MAX;

/// What the daemon must know of a binding to carry on after a restart (value of
/// [`crate::maps::RECORDS`], keyed by HoA; the programs never read it). Written before the
/// Binding Acknowledgement leaves, so a restarted daemon knows every sequence number it
/// acknowledged. Times are `CLOCK_BOOTTIME` nanoseconds: that clock survives a process
/// restart (and counts a suspend, as a binding lifetime must). Mobile network prefixes are
/// not repeated here: the prefix trie holds them with this binding's `binding_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingRecord {
    pub hoa: Ipv6Addr,
    pub coa: Ipv6Addr,
    pub ha_address: Ipv6Addr,
    pub registered_ns: u64,
    /// [`NEVER_EXPIRES`] for no expiry.
    pub expires_ns: u64,
    pub home_ifindex: u32,
    /// `BINDING_F_*` as registered (without the IPsec flag, which follows the configuration).
    pub flags: u32,
    pub binding_id: u32,
    pub sequence: u16,
    /// `ORIGIN_*`.
    pub origin: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<BindingRecord>() == 80);

/// Version of the pinned maps' layout (names, types, key and value structs). A daemon adopts
/// a pinned data plane only with the same version; change it with any of them.
pub const LAYOUT_VERSION: u32 = 1;

/// Role of the node the programs run on.
pub const ROLE_HOME_AGENT: u8 = 0;
pub const ROLE_MOBILE_NODE: u8 = 1;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are `#[repr(C)]`, made of integers and byte arrays only, with any
    // padding made explicit, so every bit pattern is valid and there is no uninitialised byte.
    unsafe impl aya::Pod for BindingEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Iface {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PrefixKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for NextHop {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BindingCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RateLimit {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BindingRecord {}
}
