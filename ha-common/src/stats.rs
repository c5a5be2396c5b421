//! Global counters: one per-CPU slot per action and per pass/drop reason.
//!
//! The slot index is the `#[repr(u32)]` discriminant, fixed once released (dashboards and
//! `hagent stats` history depend on it), as Katran does with its fixed counter indices. New
//! counters are appended; none is ever renumbered. Every early exit of a program counts one.

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident = $idx:literal => $text:literal,)*) => {
        /// Index into the per-CPU global counter array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[doc = $doc])* $name = $idx,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];

            /// A stable snake_case name, used in `hagent stats --json` and logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$name => $text,)*
                }
            }
        }
    };
}

counters! {
    /// Every frame the XDP program saw.
    RxFrames = 0 => "rx_frames",
    /// Frames whose (possibly VLAN-tagged) EtherType is IPv6.
    RxIpv6 = 1 => "rx_ipv6",
    /// Not IPv6 (ARP, IPv4, LLDP, ...): passed to the kernel untouched.
    PassNotIpv6 = 2 => "pass_not_ipv6",
    /// Shorter than the headers it announces, or not IPv6 version 6: passed to the kernel,
    /// which accounts for it in its own error counters.
    PassMalformed = 3 => "pass_malformed",
    /// VLAN-tagged: the fast path handles untagged frames only; the kernel forwards these.
    PassVlan = 4 => "pass_vlan",
    /// No binding for the destination: ordinary traffic for the kernel.
    PassNoBinding = 5 => "pass_no_binding",
    /// Bound destination, but never tunnelled: ND, link-local, multicast, hop-by-hop
    /// options.
    PassNotTunnelled = 6 => "pass_not_tunnelled",
    /// Hop limit ≤ 1: the kernel sends Time Exceeded.
    PassHopLimit = 7 => "pass_hop_limit",
    /// FIB says the neighbour is not resolved yet: the kernel resolves it; later packets take
    /// the fast path.
    PassNoNeigh = 8 => "pass_no_neigh",
    /// FIB says not forwarded (local, forwarding disabled, ...): the kernel decides.
    PassFibOther = 9 => "pass_fib_other",
    /// The binding's payload goes through kernel IPsec.
    PassIpsecBinding = 10 => "pass_ipsec_binding",
    /// Egress interface is not one the data plane may redirect to.
    PassEgressNotManaged = 11 => "pass_egress_not_managed",
    /// Encapsulated and sent back out of the ingress interface.
    EncapTx = 12 => "encap_tx",
    /// Encapsulated and redirected to another interface.
    EncapRedirect = 13 => "encap_redirect",
    /// Reverse-tunnelled packet decapsulated and forwarded (TX or redirect).
    DecapForward = 14 => "decap_forward",
    /// Reverse-tunnelled packet decapsulated and handed to the kernel (local delivery,
    /// unresolved neighbour, hop limit).
    DecapPass = 15 => "decap_pass",
    /// Reverse-tunnelled packet for another bound HoA: tunnelled again directly.
    DecapReencap = 16 => "decap_reencap",
    /// Tunnelled packet whose inner source is neither a bound HoA nor in a bound prefix
    /// (RFC 6275 §10.4.5 ingress check).
    DropDecapUnknownSource = 17 => "drop_decap_unknown_source",
    /// Tunnelled packet whose outer source is not the binding's care-of address.
    DropDecapWrongCareOf = 18 => "drop_decap_wrong_care_of",
    /// FIB says blackhole, unreachable or prohibited.
    DropFibUnreachable = 19 => "drop_fib_unreachable",
    /// Inner packet too big for the tunnel and > 1280: ICMPv6 Packet Too Big sent.
    PtbSent = 20 => "ptb_sent",
    /// Packet Too Big not sent because of the rate limit; packet dropped.
    DropPtbRateLimited = 21 => "drop_ptb_rate_limited",
    /// Inner packet ≤ 1280 whose encapsulation needs fragmenting: handed to the daemon.
    PuntFragment = 22 => "punt_fragment",
    /// The punt ring buffer was full: dropped.
    DropPuntFull = 23 => "drop_punt_full",
    /// Signalling with a Home Address option: addresses swapped so the kernel accepts it.
    SignalHaoRewritten = 24 => "signal_hao_rewritten",
    /// Destination options to one of this node's tunnel endpoint addresses without a Home
    /// Address option in front of MH or ESP: passed to the kernel. (Other traffic for this
    /// node counts as `pass_no_binding`.)
    PassLocal = 25 => "pass_local",
    /// Arrived already carrying the option type this data plane writes when it rewrites a
    /// Home Address option: forged, dropped.
    DropForgedHaoMarker = 26 => "drop_forged_hao_marker",
    /// A helper failed (adjust_head, adjust_tail, ...): dropped.
    DropHelperFailed = 27 => "drop_helper_failed",
    /// TC egress: a packet the node sent to a bound HoA was encapsulated.
    TcEncap = 28 => "tc_encap",
    /// TC egress: encapsulated and redirected through the neighbour subsystem.
    TcEncapNeigh = 29 => "tc_encap_neigh",
    /// TC egress: could not be tunnelled (FIB failure, too big): dropped.
    TcDrop = 30 => "tc_drop",
    /// Mobile node role: a tunnelled packet from the HA for the HoA, decapsulated and
    /// delivered to the kernel.
    MnDecap = 31 => "mn_decap",
    /// Mobile node role: a packet to our CoA with a type 2 routing header for our HoA (the
    /// HA's Binding Acknowledgement): the routing header removed and the destination set to
    /// the HoA — what the kernel's mip6 code would hand on — then passed to the kernel.
    MnRh2Rewritten = 32 => "mn_rh2_rewritten",
    /// Mobile node role, TC egress: a marked Mobility Header packet from our HoA (a BU the
    /// kernel may have ESP-protected) got its Home Address option and the CoA as source.
    TcSignalHao = 33 => "tc_signal_hao",
    /// Home agent role, TC egress: a marked Mobility Header packet to a bound HoA (a BA the
    /// kernel may have ESP-protected) got its type 2 routing header and the CoA as
    /// destination.
    TcSignalRh2 = 34 => "tc_signal_rh2",
    /// TC egress: a marked signalling packet for an address without a binding, left as is.
    TcSignalUnbound = 35 => "tc_signal_unbound",
    /// A plain IPv6-in-IPv6 packet for a binding whose payload must be ESP-protected
    /// (`TunnelPayload`): dropped, as the kernel's IPsec policy would.
    DropDecapUnprotected = 36 => "drop_decap_unprotected",
    /// Home agent: a Neighbor Solicitation for a bound HoA, on its home link, answered by the
    /// XDP program with a Neighbor Advertisement carrying this node's MAC (RFC 6275 §10.4.1).
    NdProxyAnswered = 37 => "nd_proxy_answered",
    /// Home agent: a Duplicate Address Detection probe (NS from ::) for a bound HoA answered
    /// with a Neighbor Advertisement to all nodes: the home agent defends the HoA.
    NdProxyDadAnswered = 38 => "nd_proxy_dad_answered",
    /// A Neighbor Solicitation for a bound HoA that fails RFC 4861 §7.1.1 validation (hop
    /// limit, code, length, checksum, options, DAD form): passed to the kernel, which drops it.
    PassNdInvalid = 39 => "pass_nd_invalid",
    /// Home agent: a Neighbor Advertisement, or another node's DAD probe, for an address this
    /// node is probing (Duplicate Address Detection for a new binding): noted for the daemon.
    DadConflictSeen = 40 => "dad_conflict_seen",
    /// Home agent, TC egress: the kernel's own Neighbor Solicitation for a bound HoA (it is
    /// about to send the HoA a packet) answered to the kernel itself, with this node's MAC, so
    /// the packet reaches the TC program and is tunnelled.
    TcNdReflected = 41 => "tc_nd_reflected",
    /// TC egress: a packet the node sent to a bound HoA does not fit the tunnel: an ICMPv6
    /// Packet Too Big went back to its sender (through this node's own input path).
    TcPtbSent = 42 => "tc_ptb_sent",
    /// A packet other than signalling to this node with a Home Address option for which a
    /// binding from its source exists: the addresses swapped, passed (RFC 6275 §9.3.1).
    HaoAccepted = 43 => "hao_accepted",
    /// A Home Address option without a binding from its source (RFC 6275 §9.3.1): dropped;
    /// the daemon sends a Binding Error (status 1).
    DropHaoNoBinding = 44 => "drop_hao_no_binding",
}

impl Counter {
    /// Number of slots the counter map needs.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The map index of this counter.
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// One counter slot: packets and bytes. `#[repr(C)]`, shared with the kernel side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<CounterValue>() == 16);
const _: () = assert!(core::mem::align_of::<CounterValue>() == 8);

#[cfg(feature = "user")]
// SAFETY: `CounterValue` is `#[repr(C)]`, made only of `u64`s, has no padding and every bit
// pattern is a valid value.
unsafe impl aya::Pod for CounterValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i, "{c:?} is not at its slot");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }
}
