//! BPF_PROG_TEST_RUN tests of the XDP program with byte-exact expected packets.
//!
//! Each test builds a private namespace with a veth pair (`ha0` = the HA's interface, whose
//! ifindex is the ingress), routes and `nud permanent` neighbours, so the program's FIB
//! lookups resolve without traffic; then it runs the program on a handcrafted frame and
//! compares the output with bytes built independently (`tests::packet`).

use std::net::Ipv6Addr;

use aya::programs::{TestRun, TestRunOptions};
use ha_common::abi::{BindingEntry, PUNT_REASON_FRAGMENT, PuntRecord};
use hagent::dataplane::{Dataplane, DataplaneOptions, Role};
use tests::{
    Netns,
    packet::{Mac, addr, checksum, eth, icmpv6, ipv6, pattern, udp},
    require_root,
    topology::seed,
};

const HA_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
const ROUTER_MAC: Mac = [0x02, 0, 0, 0, 0, 0xaa];
const ROUTER2_MAC: Mac = [0x02, 0, 0, 0, 0, 0xbb];

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn ha() -> Ipv6Addr {
    addr(seed::HA)
}
fn hoa() -> Ipv6Addr {
    addr(seed::HOA)
}
fn coa() -> Ipv6Addr {
    addr(seed::COA)
}
fn cn() -> Ipv6Addr {
    addr(seed::CN)
}

/// The namespace every test runs its program in (a non-owning handle: the test owns it).
struct Fixture {
    ns: std::mem::ManuallyDrop<Netns>,
    ifindex: u32,
}

fn fixture() -> anyhow::Result<(Netns, Fixture)> {
    let (ns, ifindex) = tests::topology::forwarding_namespace("testrun")?;
    let view = Fixture {
        ns: Netns::attach(ns.name()),
        ifindex,
    };
    Ok((ns, view))
}

fn entry(local: Ipv6Addr, remote: Ipv6Addr, binding_id: u32) -> BindingEntry {
    BindingEntry {
        local: local.octets(),
        remote: remote.octets(),
        flags: 0,
        binding_id,
        home_ifindex: 0,
        _pad: 0,
    }
}

/// Loads a small data plane in the fixture's namespace with the seed's binding (id 7) and an
/// MNP 2001:db8:100::/48 bound to CoA 2001:db8:f00f::1 (id 8).
fn dataplane(role: Role, nexthop_cache: bool) -> anyhow::Result<Dataplane> {
    let mut dp = Dataplane::load(&DataplaneOptions {
        role,
        max_bindings: 64,
        max_prefixes: 64,
        nexthop_cache,
        ..Default::default()
    })?;
    match role {
        Role::HomeAgent => {
            dp.add_local_address(ha())?;
            dp.set_binding(hoa(), &entry(ha(), coa(), 7))?;
            dp.set_prefix(
                addr("2001:db8:100::"),
                48,
                &entry(ha(), addr("2001:db8:f00f::1"), 8),
            )?;
            dp.set_binding(
                addr("2001:db8:bee5::5"),
                &entry(ha(), addr("2001:db8:f00e::5"), 9),
            )?;
        }
        Role::MobileNode => {
            dp.add_local_address(coa())?;
            dp.set_binding(hoa(), &entry(coa(), ha(), 1))?;
        }
    }
    Ok(dp)
}

/// Runs the XDP program once on `frame`; returns the action and the output frame.
fn run(dp: &mut Dataplane, ifindex: u32, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; 4096];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let mut ctx = Vec::with_capacity(24);
    for v in [0u32, frame.len() as u32, 0, ifindex, 0, 0] {
        ctx.extend_from_slice(&v.to_ne_bytes());
    }
    let r = dp.xdp()?.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        ..Default::default()
    })?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

fn counter(dp: &Dataplane, name: &str) -> u64 {
    dp.counters()
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .packets
}

/// Runs `body` in a fresh fixture namespace with a loaded data plane.
fn with_dataplane(
    test: &str,
    role: Role,
    cache: bool,
    body: impl FnOnce(&mut Dataplane, &Fixture) + Send + 'static,
) -> anyhow::Result<()> {
    if !require_root(test) {
        return Ok(());
    }
    let (ns, fx) = fixture()?;
    ns.run_in(move || -> anyhow::Result<()> {
        let mut dp = dataplane(role, cache)?;
        body(&mut dp, &fx);
        Ok(())
    })??;
    Ok(())
}

fn downlink_frame(dst: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let mut f = eth(HA_MAC, PEER_MAC);
    f.extend(ipv6(
        0xb8,
        0x12345,
        17,
        hop_limit,
        cn(),
        dst,
        &udp(cn(), dst, 4000, 5000, &pattern(100)),
    ));
    f
}

#[test]
fn encapsulates_traffic_for_a_bound_hoa() -> anyhow::Result<()> {
    with_dataplane(
        "encapsulates_traffic_for_a_bound_hoa",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let input = downlink_frame(hoa(), 64);
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX, "egress is the ingress interface");
            let inner_in = &input[14..];
            let mut inner = inner_in.to_vec();
            inner[7] = 63; // the HA forwards: hop limit decremented
            let mut expected = eth(ROUTER_MAC, HA_MAC);
            // Outer: traffic class and flow label copied, next header 41, hop limit 64.
            expected.extend(ipv6(0xb8, 0x12345, 41, 64, ha(), coa(), &inner));
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "encap_tx"), 1);
            let c = dp.binding_counters(7).unwrap();
            assert_eq!(
                (c.tunnelled_packets, c.tunnelled_bytes),
                (1, inner.len() as u64)
            );
        },
    )
}

#[test]
fn encapsulates_traffic_for_a_mobile_network_prefix() -> anyhow::Result<()> {
    with_dataplane(
        "encapsulates_traffic_for_a_mobile_network_prefix",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let dst = addr("2001:db8:100:7::42");
            let input = downlink_frame(dst, 10);
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            let mut inner = input[14..].to_vec();
            inner[7] = 9;
            let mut expected = eth(ROUTER_MAC, HA_MAC);
            expected.extend(ipv6(
                0xb8,
                0x12345,
                41,
                64,
                ha(),
                addr("2001:db8:f00f::1"),
                &inner,
            ));
            assert_eq!(out, expected);
            assert_eq!(dp.binding_counters(8).unwrap().tunnelled_packets, 1);
        },
    )
}

#[test]
fn decapsulates_reverse_tunnelled_traffic() -> anyhow::Result<()> {
    with_dataplane(
        "decapsulates_reverse_tunnelled_traffic",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let inner = ipv6(
                0,
                0,
                17,
                64,
                hoa(),
                cn(),
                &udp(hoa(), cn(), 5000, 4000, &pattern(64)),
            );
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 41, 60, coa(), ha(), &inner));
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            let mut expected = eth(ROUTER_MAC, HA_MAC);
            let mut fwd = inner.clone();
            fwd[7] = 63;
            expected.extend(fwd);
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "decap_forward"), 1);
            let c = dp.binding_counters(7).unwrap();
            assert_eq!(
                (c.reverse_packets, c.reverse_bytes),
                (1, inner.len() as u64)
            );
        },
    )
}

#[test]
fn spoofed_reverse_tunnel_packets_are_dropped() -> anyhow::Result<()> {
    with_dataplane(
        "spoofed_reverse_tunnel_packets_are_dropped",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // Right inner source (the HoA), wrong outer source (not its CoA).
            let inner = ipv6(0, 0, 17, 64, hoa(), cn(), &udp(hoa(), cn(), 1, 2, b"x"));
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 41, 60, addr("2001:db8:f00d::bad"), ha(), &inner));
            assert_eq!(run(dp, fx.ifindex, &input).unwrap().0, XDP_DROP);
            assert_eq!(counter(dp, "drop_decap_wrong_care_of"), 1);

            // Right outer source (the CoA), but an inner source nobody registered.
            let spoofed = addr("2001:db8:bee5::666");
            let inner = ipv6(0, 0, 17, 64, spoofed, cn(), &udp(spoofed, cn(), 1, 2, b"x"));
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 41, 60, coa(), ha(), &inner));
            assert_eq!(run(dp, fx.ifindex, &input).unwrap().0, XDP_DROP);
            assert_eq!(counter(dp, "drop_decap_unknown_source"), 1);
            assert_eq!(dp.binding_counters(7).unwrap().reverse_packets, 0);
        },
    )
}

#[test]
fn traffic_between_two_mobile_nodes_is_reencapsulated() -> anyhow::Result<()> {
    with_dataplane(
        "traffic_between_two_mobile_nodes_is_reencapsulated",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let other = addr("2001:db8:100::9"); // inside the MNP bound to 2001:db8:f00f::1
            let inner = ipv6(
                0x20,
                7,
                17,
                64,
                hoa(),
                other,
                &udp(hoa(), other, 1, 2, &pattern(20)),
            );
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 41, 60, coa(), ha(), &inner));
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            let mut fwd = inner.clone();
            fwd[7] = 63;
            let mut expected = eth(ROUTER_MAC, HA_MAC);
            expected.extend(ipv6(0x20, 7, 41, 64, ha(), addr("2001:db8:f00f::1"), &fwd));
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "decap_reencap"), 1);
        },
    )
}

#[test]
fn what_must_stay_with_the_kernel_passes_untouched() -> anyhow::Result<()> {
    with_dataplane(
        "what_must_stay_with_the_kernel_passes_untouched",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // Unbound destination.
            let input = downlink_frame(addr("2001:db8:cafe::99"), 64);
            assert_eq!(
                run(dp, fx.ifindex, &input).unwrap(),
                (XDP_PASS, input.clone())
            );
            assert_eq!(counter(dp, "pass_no_binding"), 1);

            // Neighbour Solicitation to a HoA bound on another link: not ours to answer here.
            let mut ns_body = vec![0u8; 4];
            ns_body.extend_from_slice(&hoa().octets());
            let mut input = eth(HA_MAC, PEER_MAC);
            let src = addr("2001:db8:bee5::1");
            input.extend(ipv6(
                0,
                0,
                58,
                255,
                src,
                hoa(),
                &icmpv6(src, hoa(), 135, 0, &ns_body),
            ));
            assert_eq!(
                run(dp, fx.ifindex, &input).unwrap(),
                (XDP_PASS, input.clone())
            );
            assert_eq!(counter(dp, "pass_not_tunnelled"), 1);

            // Hop limit 1: the kernel sends Time Exceeded.
            let input = downlink_frame(hoa(), 1);
            assert_eq!(
                run(dp, fx.ifindex, &input).unwrap(),
                (XDP_PASS, input.clone())
            );
            assert_eq!(counter(dp, "pass_hop_limit"), 1);

            // Not IPv6.
            let mut arp = vec![0xffu8; 6];
            arp.extend_from_slice(&PEER_MAC);
            arp.extend_from_slice(&[0x08, 0x06]);
            arp.extend_from_slice(&[0u8; 28]);
            assert_eq!(run(dp, fx.ifindex, &arp).unwrap(), (XDP_PASS, arp.clone()));
            assert_eq!(counter(dp, "pass_not_ipv6"), 1);
            assert_eq!(dp.binding_counters(7).unwrap().tunnelled_packets, 0);
        },
    )
}

#[test]
fn oversized_packet_gets_an_exact_packet_too_big() -> anyhow::Result<()> {
    with_dataplane(
        "oversized_packet_gets_an_exact_packet_too_big",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // 1500-byte inner packet: with the 40-byte outer header it exceeds ha0's MTU of 1500.
            let inner = ipv6(
                0,
                0,
                17,
                64,
                cn(),
                hoa(),
                &udp(cn(), hoa(), 1, 2, &pattern(1452)),
            );
            assert_eq!(inner.len(), 1500);
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(&inner);
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            // ICMPv6 Packet Too Big from the HA address to the sender, MTU = 1500 - 40, quoting
            // as much of the packet as fits in 1280 bytes.
            let mut body = 1460u32.to_be_bytes().to_vec();
            body.extend_from_slice(&inner[..1232]);
            let icmp = icmpv6(ha(), cn(), 2, 0, &body);
            let mut expected = eth(PEER_MAC, HA_MAC);
            expected.extend(ipv6(0, 0, 58, 64, ha(), cn(), &icmp));
            assert_eq!(expected.len(), 14 + 1280);
            assert_eq!(out.len(), expected.len());
            assert_eq!(out[..62], expected[..62], "headers differ");
            assert_eq!(out, expected);
            assert_eq!(
                checksum(ha(), cn(), 58, &out[54..]),
                0,
                "ICMPv6 checksum verifies"
            );
            assert_eq!(counter(dp, "ptb_sent"), 1);
        },
    )
}

#[test]
fn small_packet_needing_fragmentation_goes_to_the_daemon() -> anyhow::Result<()> {
    with_dataplane(
        "small_packet_needing_fragmentation_goes_to_the_daemon",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // 2001:db8:bee5::5 is bound to a CoA behind a 1300-byte MTU: a 1280-byte inner
            // packet needs 1320 bytes once tunnelled.
            let dst = addr("2001:db8:bee5::5");
            let inner = ipv6(
                0,
                0,
                17,
                64,
                cn(),
                dst,
                &udp(cn(), dst, 1, 2, &pattern(1232)),
            );
            assert_eq!(inner.len(), 1280);
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(&inner);
            let mut ring = dp.take_punt_ring().unwrap();
            let (action, _) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(
                action, XDP_DROP,
                "handed to the daemon, not forwarded by XDP"
            );
            assert_eq!(counter(dp, "punt_fragment"), 1);
            let item = ring.next().expect("a punted record");
            assert_eq!(item.len(), std::mem::size_of::<PuntRecord>());
            // SAFETY: the record was written by the program as a PuntRecord.
            let rec: PuntRecord =
                unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PuntRecord) };
            assert_eq!(rec.reason, PUNT_REASON_FRAGMENT);
            assert_eq!(rec.len, 1280);
            assert_eq!(rec.binding, entry(ha(), addr("2001:db8:f00e::5"), 9));
            let mut fwd = inner.clone();
            fwd[7] = 63;
            assert_eq!(&rec.packet[..1280], &fwd[..]);
        },
    )
}

#[test]
fn home_address_option_is_swapped_for_the_kernel() -> anyhow::Result<()> {
    with_dataplane(
        "home_address_option_is_swapped_for_the_kernel",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // A BU from the CoA with a Home Address option: DestOpt(PadN 4, HAO) + MH bytes.
            let mh = [59u8, 1, 5, 0, 0, 0, 0, 1, 0xc0, 0, 0, 10, 0, 0, 0, 0];
            let mut dstopts = vec![135u8, 2, 1, 2, 0, 0, 0xc9, 16];
            dstopts.extend_from_slice(&hoa().octets());
            dstopts.extend_from_slice(&mh);
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 60, 64, coa(), ha(), &dstopts));
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_PASS);
            // Source is now the HoA; the option is retyped 0x1E and carries the CoA.
            let mut swapped = vec![135u8, 2, 1, 2, 0, 0, 0x1e, 16];
            swapped.extend_from_slice(&coa().octets());
            swapped.extend_from_slice(&mh);
            let mut expected = eth(HA_MAC, PEER_MAC);
            expected.extend(ipv6(0, 0, 60, 64, hoa(), ha(), &swapped));
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "signal_hao_rewritten"), 1);

            // The retyped option arriving from the wire is forged.
            let mut forged = eth(HA_MAC, PEER_MAC);
            forged.extend(ipv6(0, 0, 60, 64, coa(), ha(), &swapped));
            assert_eq!(run(dp, fx.ifindex, &forged).unwrap().0, XDP_DROP);
            assert_eq!(counter(dp, "drop_forged_hao_marker"), 1);
        },
    )
}

/// RFC 6275 §9.3.1: a Home Address option in anything but signalling is accepted only when a
/// binding for that home address exists from that source (addresses swapped as the kernel's
/// mip6 code would); otherwise the packet is dropped and the daemon told, for a Binding Error
/// with status 1. Fixture table: description, source, home address, action, counter.
#[test]
fn home_address_option_without_a_binding_is_refused_rfc6275_9_3_1() -> anyhow::Result<()> {
    with_dataplane(
        "home_address_option_without_a_binding_is_refused_rfc6275_9_3_1",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let echo = |src: Ipv6Addr, hoa: Ipv6Addr| {
                // DestOpt(PadN 4, HAO) + ICMPv6 echo request (checksum over the HoA, §6.3).
                let mut d = vec![58u8, 2, 1, 2, 0, 0, 0xc9, 16];
                d.extend_from_slice(&hoa.octets());
                d.extend(icmpv6(hoa, ha(), 128, 0, &[0, 1, 0, 1, 0xaa, 0xbb]));
                let mut f = eth(HA_MAC, PEER_MAC);
                f.extend(ipv6(0, 0, 60, 64, src, ha(), &d));
                (f, d)
            };
            // Bound from its CoA: swapped and passed.
            let (input, d) = echo(coa(), hoa());
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            let mut swapped = d.clone();
            swapped[6] = 0x1e;
            swapped[8..24].copy_from_slice(&coa().octets());
            let mut expected = eth(HA_MAC, PEER_MAC);
            expected.extend(ipv6(0, 0, 60, 64, hoa(), ha(), &swapped));
            assert_eq!((action, out), (XDP_PASS, expected));
            assert_eq!(counter(dp, "hao_accepted"), 1);

            let mut ring = dp.take_punt_ring().unwrap();
            let unbound = addr("2001:db8:bee5::99");
            let elsewhere = addr("2001:db8:f00d::77");
            for (what, src, hoa, n) in [
                ("no binding for the home address", coa(), unbound, 1),
                (
                    "bound, but not from this care-of address",
                    elsewhere,
                    hoa(),
                    2,
                ),
            ] {
                let (input, _) = echo(src, hoa);
                assert_eq!(run(dp, fx.ifindex, &input).unwrap().0, XDP_DROP, "{what}");
                assert_eq!(counter(dp, "drop_hao_no_binding"), n, "{what}");
                let item = ring.next().expect("a punted record");
                // SAFETY: the program wrote the record as a PuntRecord.
                let rec: PuntRecord =
                    unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PuntRecord) };
                assert_eq!(
                    rec.reason,
                    ha_common::abi::PUNT_REASON_HAO_NO_BINDING,
                    "{what}"
                );
                assert_eq!(rec.len as usize, ha_common::abi::PUNT_HAO_LEN);
                assert_eq!(&rec.packet[8..24], &src.octets(), "{what}");
                assert_eq!(&rec.packet[24..40], &ha().octets(), "{what}");
                assert_eq!(&rec.packet[40..56], &hoa.octets(), "{what}");
            }
            assert_eq!(counter(dp, "hao_accepted"), 1);
        },
    )
}

#[test]
fn cached_next_hop_follows_a_route_change() -> anyhow::Result<()> {
    with_dataplane(
        "cached_next_hop_follows_a_route_change",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let input = downlink_frame(hoa(), 64);
            let (_, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(out[..6], ROUTER_MAC);
            // Re-route the care-of prefix via the second router; the daemon bumps the epoch on
            // the route event (here: by hand).
            fx.ns
                .ip(&[
                    "-6",
                    "route",
                    "replace",
                    "2001:db8:f00d::/64",
                    "via",
                    "2001:db8:bee5::2",
                    "dev",
                    "ha0",
                ])
                .unwrap();
            let (_, stale) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(
                stale[..6],
                ROUTER_MAC,
                "without invalidation the cache still answers"
            );
            dp.bump_nexthop_epoch().unwrap();
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            assert_eq!(
                out[..6],
                ROUTER2_MAC,
                "after invalidation the new route is used"
            );
        },
    )
}

#[test]
fn without_the_cache_every_packet_asks_the_fib() -> anyhow::Result<()> {
    with_dataplane(
        "without_the_cache_every_packet_asks_the_fib",
        Role::HomeAgent,
        false,
        |dp, fx| {
            let input = downlink_frame(hoa(), 64);
            let (_, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(out[..6], ROUTER_MAC);
            fx.ns
                .ip(&[
                    "-6",
                    "route",
                    "replace",
                    "2001:db8:f00d::/64",
                    "via",
                    "2001:db8:bee5::2",
                    "dev",
                    "ha0",
                ])
                .unwrap();
            let (_, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(out[..6], ROUTER2_MAC);
        },
    )
}

#[test]
fn mobile_node_decapsulates_from_its_home_agent_only() -> anyhow::Result<()> {
    with_dataplane(
        "mobile_node_decapsulates_from_its_home_agent_only",
        Role::MobileNode,
        true,
        |dp, fx| {
            let inner = ipv6(
                0,
                0,
                17,
                63,
                cn(),
                hoa(),
                &udp(cn(), hoa(), 1, 2, &pattern(30)),
            );
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 41, 64, ha(), coa(), &inner));
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_PASS);
            let mut expected = eth(HA_MAC, PEER_MAC);
            expected.extend(&inner);
            assert_eq!(out, expected, "the inner packet is delivered unchanged");
            assert_eq!(counter(dp, "mn_decap"), 1);

            let mut spoofed = eth(HA_MAC, PEER_MAC);
            spoofed.extend(ipv6(
                0,
                0,
                41,
                64,
                addr("2001:db8:bee5::bad"),
                coa(),
                &inner,
            ));
            assert_eq!(run(dp, fx.ifindex, &spoofed).unwrap().0, XDP_DROP);
        },
    )
}

#[test]
fn mobile_node_accepts_the_bas_type_2_routing_header() -> anyhow::Result<()> {
    with_dataplane(
        "mobile_node_accepts_the_bas_type_2_routing_header",
        Role::MobileNode,
        true,
        |dp, fx| {
            // HA → CoA, RH2 (segments left 1, address = HoA), then an MH.
            let mh = [59u8, 1, 6, 0, 0x12, 0x34, 0, 0, 0, 7, 0, 100, 0, 0, 0, 0];
            let mut rh2 = vec![135u8, 2, 2, 1, 0, 0, 0, 0];
            rh2.extend_from_slice(&hoa().octets());
            rh2.extend_from_slice(&mh);
            let mut input = eth(HA_MAC, PEER_MAC);
            input.extend(ipv6(0, 0, 43, 64, ha(), coa(), &rh2));
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_PASS);
            // The routing header is gone and the destination is the HoA: what the kernel's
            // mip6 code hands on (kernels with CONFIG_IPV6_MIP6 drop a type 2 header they
            // did not process themselves, kernels without it one with segments left).
            let mut expected = eth(HA_MAC, PEER_MAC);
            expected.extend(ipv6(0, 0, 135, 64, ha(), hoa(), &mh));
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "mn_rh2_rewritten"), 1);
        },
    )
}

/// The seed's binding with its home link: the fixture's `ha0` (NS for the HoA are answered there
/// only), whose MAC the programs learn from `HA_IFACES`.
fn bind_on_home_link(dp: &mut Dataplane, fx: &Fixture) {
    let mut e = entry(ha(), coa(), 7);
    e.home_ifindex = fx.ifindex;
    dp.set_binding(hoa(), &e).unwrap();
    dp.set_iface(fx.ifindex, HA_MAC, hagent::config::XdpMode::Native)
        .unwrap();
}

/// The solicited-node multicast address of `a` and its MAC.
fn solicited(a: Ipv6Addr) -> (Ipv6Addr, Mac) {
    let o = a.octets();
    let g = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    (g, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// A Neighbor Solicitation frame for `target` from `src` (MAC `src_mac`) to `dst`.
fn ns_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    options: &[u8],
) -> Vec<u8> {
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(options);
    let mut f = eth(dst_mac, src_mac);
    f.extend(ipv6(
        0,
        0,
        58,
        255,
        src,
        dst,
        &icmpv6(src, dst, 135, 0, &body),
    ));
    f
}

/// The Neighbor Advertisement we expect: from `src` to `dst`, `flags`, target link-layer
/// address `mac` (built here with the tests' own builders, not the data plane's).
fn na_frame(
    dst_mac: Mac,
    mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: u8,
) -> Vec<u8> {
    let mut body = vec![flags, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac);
    let mut f = eth(dst_mac, mac);
    f.extend(ipv6(
        0,
        0,
        58,
        255,
        src,
        dst,
        &icmpv6(src, dst, 136, 0, &body),
    ));
    f
}

const ROUTER: &str = "2001:db8:bee5::1";

#[test]
fn neighbor_solicitation_for_a_bound_hoa_is_answered_rfc6275_10_4_1() -> anyhow::Result<()> {
    with_dataplane(
        "neighbor_solicitation_for_a_bound_hoa_is_answered_rfc6275_10_4_1",
        Role::HomeAgent,
        true,
        |dp, fx| {
            bind_on_home_link(dp, fx);
            // The home router resolves the HoA: NS to the solicited-node group with its SLLA.
            let (group, group_mac) = solicited(hoa());
            let slla = [1u8, 1, 2, 0, 0, 0, 0, 0xaa];
            let input = ns_frame(ROUTER_MAC, group_mac, addr(ROUTER), group, hoa(), &slla);
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            // Solicited, not override (a proxy's answer), our MAC, from the HA address.
            let expected = na_frame(ROUTER_MAC, HA_MAC, ha(), addr(ROUTER), hoa(), 0x40);
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "nd_proxy_answered"), 1);

            // Its unicast re-check (NUD probe) is answered the same way.
            let input = ns_frame(ROUTER_MAC, HA_MAC, addr(ROUTER), hoa(), hoa(), &slla);
            assert_eq!(run(dp, fx.ifindex, &input).unwrap(), (XDP_TX, expected));
        },
    )
}

#[test]
fn dad_probe_for_a_bound_hoa_is_answered_to_all_nodes_rfc4861_7_2_4() -> anyhow::Result<()> {
    with_dataplane(
        "dad_probe_for_a_bound_hoa_is_answered_to_all_nodes_rfc4861_7_2_4",
        Role::HomeAgent,
        true,
        |dp, fx| {
            bind_on_home_link(dp, fx);
            // A node (the mobile node, back home) probes its address: from ::, with a nonce.
            let (group, group_mac) = solicited(hoa());
            let nonce = [14u8, 1, 1, 2, 3, 4, 5, 6];
            let input = ns_frame(
                PEER_MAC,
                group_mac,
                Ipv6Addr::UNSPECIFIED,
                group,
                hoa(),
                &nonce,
            );
            assert_eq!(input.len(), 86);
            let (action, out) = run(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, XDP_TX);
            let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
            let expected = na_frame([0x33, 0x33, 0, 0, 0, 1], HA_MAC, ha(), all_nodes, hoa(), 0);
            assert_eq!(out, expected, "multicast, not solicited");
            assert_eq!(counter(dp, "nd_proxy_dad_answered"), 1);

            // Without the nonce the frame is 8 bytes shorter: the answer grows it.
            let input = ns_frame(
                PEER_MAC,
                group_mac,
                Ipv6Addr::UNSPECIFIED,
                group,
                hoa(),
                &[],
            );
            assert_eq!(run(dp, fx.ifindex, &input).unwrap(), (XDP_TX, expected));
        },
    )
}

#[test]
fn invalid_or_foreign_solicitations_pass_untouched_rfc4861_7_1_1() -> anyhow::Result<()> {
    with_dataplane(
        "invalid_or_foreign_solicitations_pass_untouched_rfc4861_7_1_1",
        Role::HomeAgent,
        true,
        |dp, fx| {
            bind_on_home_link(dp, fx);
            let (group, group_mac) = solicited(hoa());
            let slla = [1u8, 1, 2, 0, 0, 0, 0, 0xaa];
            let good = ns_frame(ROUTER_MAC, group_mac, addr(ROUTER), group, hoa(), &slla);
            let mut cases = Vec::new();
            let mut hop = good.clone();
            hop[14 + 7] = 254;
            cases.push(("hop limit 254 (off-link)", hop, "pass_nd_invalid"));
            let mut bad = good.clone();
            bad[14 + 40 + 2] ^= 0x55;
            cases.push(("bad checksum", bad, "pass_nd_invalid"));
            cases.push((
                "DAD probe with a source link-layer address",
                ns_frame(
                    PEER_MAC,
                    group_mac,
                    Ipv6Addr::UNSPECIFIED,
                    group,
                    hoa(),
                    &slla,
                ),
                "pass_nd_invalid",
            ));
            cases.push((
                "zero-length option",
                ns_frame(
                    ROUTER_MAC,
                    group_mac,
                    addr(ROUTER),
                    group,
                    hoa(),
                    &[1, 0, 0, 0, 0, 0, 0, 0],
                ),
                "pass_nd_invalid",
            ));
            let other = addr("2001:db8:bee5::77");
            let (og, omac) = solicited(other);
            cases.push((
                "unbound target",
                ns_frame(ROUTER_MAC, omac, addr(ROUTER), og, other, &slla),
                "pass_not_tunnelled",
            ));
            for (what, input, reason) in cases {
                let before = counter(dp, reason);
                assert_eq!(
                    run(dp, fx.ifindex, &input).unwrap(),
                    (XDP_PASS, input.clone()),
                    "{what}"
                );
                assert_eq!(counter(dp, reason), before + 1, "{what}: {reason}");
            }
            // A binding whose home link is another interface: not answered here.
            let mut e = entry(ha(), coa(), 7);
            e.home_ifindex = fx.ifindex + 100;
            dp.set_binding(hoa(), &e).unwrap();
            assert_eq!(
                run(dp, fx.ifindex, &good).unwrap(),
                (XDP_PASS, good.clone())
            );
            assert_eq!(counter(dp, "nd_proxy_answered"), 0);
        },
    )
}

#[test]
fn dad_probes_note_a_conflict_rfc4862_5_4_3() -> anyhow::Result<()> {
    with_dataplane(
        "dad_probes_note_a_conflict_rfc4862_5_4_3",
        Role::HomeAgent,
        true,
        |dp, fx| {
            let mut probes = dp.dad_probes().unwrap();
            let (a, b, c) = (
                addr("2001:db8:bee5::a"),
                addr("2001:db8:bee5::b"),
                addr("2001:db8:bee5::c"),
            );
            for x in [a, b, c] {
                probes.start(x).unwrap();
            }
            // `a` answers our probe (NA to all nodes); another node probes `b` at the same time.
            let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
            let na = na_frame([0x33, 0x33, 0, 0, 0, 1], PEER_MAC, a, all_nodes, a, 0x20);
            assert_eq!(run(dp, fx.ifindex, &na).unwrap(), (XDP_PASS, na.clone()));
            let (group, group_mac) = solicited(b);
            let probe = ns_frame(PEER_MAC, group_mac, Ipv6Addr::UNSPECIFIED, group, b, &[]);
            assert_eq!(run(dp, fx.ifindex, &probe).unwrap().0, XDP_PASS);
            // An advertisement for `c` that was routed here (hop limit below 255, RFC 4861
            // §7.1.2) is no evidence: an off-link node must not fail a registration's DAD.
            let mut routed = na_frame([0x33, 0x33, 0, 0, 0, 1], PEER_MAC, c, all_nodes, c, 0x20);
            routed[14 + 7] = 64;
            assert_eq!(run(dp, fx.ifindex, &routed).unwrap().0, XDP_PASS);
            assert_eq!(counter(dp, "dad_conflict_seen"), 2);
            assert_eq!(probes.finish(a).unwrap(), Some(true));
            assert_eq!(probes.finish(b).unwrap(), Some(true));
            assert_eq!(probes.finish(c).unwrap(), Some(false), "nobody claimed c");
            assert_eq!(probes.finish(c).unwrap(), None, "finished once");
        },
    )
}

#[test]
fn the_kernels_own_solicitation_for_a_bound_hoa_is_answered_to_itself() -> anyhow::Result<()> {
    with_dataplane(
        "the_kernels_own_solicitation_for_a_bound_hoa_is_answered_to_itself",
        Role::HomeAgent,
        true,
        |dp, fx| {
            bind_on_home_link(dp, fx);
            // What the HA's kernel sends to resolve the HoA before sending it a packet.
            let (group, group_mac) = solicited(hoa());
            let mut slla = vec![1u8, 1];
            slla.extend_from_slice(&HA_MAC);
            let input = ns_frame(HA_MAC, group_mac, ha(), group, hoa(), &slla);
            let (action, out) = run_tc(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, TC_ACT_REDIRECT, "to our own input");
            // As if the HoA answered with our MAC: solicited and override, so the kernel's
            // neighbour entry for the HoA points at us.
            assert_eq!(out, na_frame(HA_MAC, HA_MAC, hoa(), ha(), hoa(), 0x60));
            assert_eq!(counter(dp, "tc_nd_reflected"), 1);
            assert!(
                dp.take_nd_seen(hoa()).unwrap(),
                "noted for the binding's removal"
            );
            assert!(!dp.take_nd_seen(hoa()).unwrap());

            // An unbound target leaves as it is.
            let other = addr("2001:db8:bee5::77");
            let (og, omac) = solicited(other);
            let input = ns_frame(HA_MAC, omac, ha(), og, other, &slla);
            assert_eq!(
                run_tc(dp, fx.ifindex, &input).unwrap(),
                (TC_ACT_OK, input.clone())
            );
        },
    )
}

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;

/// Runs the TC egress program once on `frame` leaving `ifindex`.
fn run_tc(dp: &mut Dataplane, ifindex: u32, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; 4096];
    // struct __sk_buff: the kernel takes ifindex (offset 40) from ctx_in for test runs.
    let mut ctx = vec![0u8; 192];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let r = dp.tc()?.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        ..Default::default()
    })?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

#[test]
fn what_the_node_sends_a_hoa_too_big_for_the_tunnel_gets_a_packet_too_big_rfc2473_7_1()
-> anyhow::Result<()> {
    with_dataplane(
        "what_the_node_sends_a_hoa_too_big_for_the_tunnel_gets_a_packet_too_big_rfc2473_7_1",
        Role::HomeAgent,
        true,
        |dp, fx| {
            bind_on_home_link(dp, fx);
            // A 1500-byte packet for the HoA leaves through the kernel (no route MTU per
            // binding sizes it): with the outer header it exceeds ha0's 1500.
            let inner = ipv6(
                0,
                0,
                17,
                63,
                cn(),
                hoa(),
                &udp(cn(), hoa(), 1, 2, &pattern(1452)),
            );
            let mut input = eth(ROUTER_MAC, HA_MAC);
            input.extend(&inner);
            let (action, out) = run_tc(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, TC_ACT_REDIRECT, "into our own input");
            let mut body = 1460u32.to_be_bytes().to_vec();
            body.extend_from_slice(&inner[..1232]);
            let mut expected = eth(HA_MAC, HA_MAC);
            expected.extend(ipv6(
                0,
                0,
                58,
                64,
                ha(),
                cn(),
                &icmpv6(ha(), cn(), 2, 0, &body),
            ));
            assert_eq!(out.len(), expected.len());
            assert_eq!(out[..62], expected[..62], "headers differ");
            assert_eq!(out, expected);
            assert_eq!(counter(dp, "tc_ptb_sent"), 1);
        },
    )
}

#[test]
fn a_small_packet_the_node_sends_needing_fragmentation_goes_to_the_daemon() -> anyhow::Result<()> {
    with_dataplane(
        "a_small_packet_the_node_sends_needing_fragmentation_goes_to_the_daemon",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // 2001:db8:bee5::5 is bound to a CoA behind a 1300-byte MTU.
            let dst = addr("2001:db8:bee5::5");
            let mut e = entry(ha(), addr("2001:db8:f00e::5"), 9);
            e.home_ifindex = fx.ifindex;
            dp.set_binding(dst, &e).unwrap();
            let inner = ipv6(
                0,
                0,
                17,
                64,
                ha(),
                dst,
                &udp(ha(), dst, 1, 2, &pattern(1232)),
            );
            let mut input = eth(ROUTER_MAC, HA_MAC);
            input.extend(&inner);
            let mut ring = dp.take_punt_ring().unwrap();
            let (action, _) = run_tc(dp, fx.ifindex, &input).unwrap();
            assert_eq!(action, 2, "TC_ACT_SHOT: handed to the daemon");
            assert_eq!(counter(dp, "punt_fragment"), 1);
            let item = ring.next().expect("a punted record");
            // SAFETY: the record was written by the program as a PuntRecord.
            let rec: PuntRecord =
                unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PuntRecord) };
            assert_eq!(rec.len, 1280);
            assert_eq!(rec.binding, e);
            assert_eq!(
                &rec.packet[..1280],
                &inner[..],
                "sent as it is (the kernel routed it)"
            );
        },
    )
}

/// A Mobility Header message of `mh_type` with `body` (checksum over the pseudo-header, RFC
/// 6275 §6.1.1), padded as the length field requires.
fn mobility_header(src: Ipv6Addr, dst: Ipv6Addr, mh_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![59, 0, mh_type, 0, 0, 0];
    v.extend_from_slice(body);
    assert_eq!(v.len() % 8, 0, "fixture MH must be a multiple of 8 bytes");
    v[1] = (v.len() / 8 - 1) as u8;
    let c = checksum(src, dst, 135, &v);
    v[4..6].copy_from_slice(&c.to_be_bytes());
    v
}

/// One row of a fixture table (as Katran's): description, input frame, expected output frame,
/// XDP action, and the counter that must count it.
struct Row {
    what: &'static str,
    input: Vec<u8>,
    expected: Vec<u8>,
    action: u32,
    counter: &'static str,
}

/// Return routability through the home agent (RFC 6275 §5.2.5): every Mobility Header a
/// correspondent sends a bound HoA — Home Test, Binding Refresh Request, Binding Error — is
/// tunnelled to the CoA like any other packet, and the mobile node's reverse-tunnelled Home
/// Test Init is decapsulated and forwarded (or tunnelled again, to a HoA bound here).
/// Fixture table: description, input, expected output, action, counter.
#[test]
fn return_routability_signalling_is_relayed_through_the_tunnel_rfc6275_5_2_5() -> anyhow::Result<()>
{
    with_dataplane(
        "return_routability_signalling_is_relayed_through_the_tunnel_rfc6275_5_2_5",
        Role::HomeAgent,
        true,
        |dp, fx| {
            // HoT: home nonce index, home init cookie, home keygen token (RFC 6275 §6.1.5).
            let mut hot = vec![0x00, 0x05];
            hot.extend_from_slice(&[0x11; 8]);
            hot.extend_from_slice(&[0x22; 8]);
            // BRR: reserved (2 bytes), as the 8-byte alignment needs.
            let brr = vec![0, 0];
            // BE, status 1 (unknown binding for a HAO), then the home address.
            let mut be = vec![1, 0];
            be.extend_from_slice(&hoa().octets());
            let mut cases: Vec<Row> = Vec::new();
            for (what, mh_type, body) in [
                ("Home Test from a correspondent", 3u8, &hot),
                ("Binding Refresh Request from a correspondent", 0, &brr),
                ("Binding Error from a correspondent", 7, &be),
            ] {
                let packet = ipv6(
                    0,
                    0,
                    135,
                    64,
                    cn(),
                    hoa(),
                    &mobility_header(cn(), hoa(), mh_type, body),
                );
                let mut input = eth(HA_MAC, PEER_MAC);
                input.extend(&packet);
                let mut inner = packet.clone();
                inner[7] = 63;
                let mut expected = eth(ROUTER_MAC, HA_MAC);
                expected.extend(ipv6(0, 0, 41, 64, ha(), coa(), &inner));
                cases.push(Row {
                    what,
                    input,
                    expected,
                    action: XDP_TX,
                    counter: "encap_tx",
                });
            }
            // HoTI (RFC 6275 §6.1.3): reserved, home init cookie; from the HoA to the CN, in
            // the reverse tunnel.
            let mut hoti_body = vec![0, 0];
            hoti_body.extend_from_slice(&[0x33; 8]);
            for (what, dst, expected_outer) in [
                (
                    "Home Test Init to a correspondent, reverse-tunnelled",
                    cn(),
                    None,
                ),
                (
                    "Home Test Init to a node bound here, tunnelled again",
                    addr("2001:db8:100::9"),
                    Some(addr("2001:db8:f00f::1")),
                ),
            ] {
                let inner = ipv6(
                    0,
                    0,
                    135,
                    64,
                    hoa(),
                    dst,
                    &mobility_header(hoa(), dst, 1, &hoti_body),
                );
                let mut input = eth(HA_MAC, PEER_MAC);
                input.extend(ipv6(0, 0, 41, 60, coa(), ha(), &inner));
                let mut fwd = inner.clone();
                fwd[7] = 63;
                let mut expected = eth(ROUTER_MAC, HA_MAC);
                let counter = match expected_outer {
                    None => {
                        expected.extend(fwd);
                        "decap_forward"
                    }
                    Some(to) => {
                        expected.extend(ipv6(0, 0, 41, 64, ha(), to, &fwd));
                        "decap_reencap"
                    }
                };
                cases.push(Row {
                    what,
                    input,
                    expected,
                    action: XDP_TX,
                    counter,
                });
            }
            for Row {
                what,
                input,
                expected,
                action,
                counter: name,
            } in cases
            {
                let before = counter(dp, name);
                assert_eq!(
                    run(dp, fx.ifindex, &input).unwrap(),
                    (action, expected),
                    "{what}"
                );
                assert_eq!(counter(dp, name), before + 1, "{what}: {name}");
            }
            assert_eq!(counter(dp, "pass_not_tunnelled"), 0);
            assert_eq!(dp.binding_counters(7).unwrap().tunnelled_packets, 3);
        },
    )
}

/// TC egress: a Mobility Header the kernel forwards (or a local process sends) to a bound HoA
/// is tunnelled; the home agent's own unmarked BA to a HoA — a mobile node at home — goes on
/// the home link untouched.
#[test]
fn tc_tunnels_a_forwarded_mobility_header_but_not_the_home_agents_own() -> anyhow::Result<()> {
    with_dataplane(
        "tc_tunnels_a_forwarded_mobility_header_but_not_the_home_agents_own",
        Role::HomeAgent,
        true,
        |dp, fx| {
            dp.add_local_address(ha()).unwrap();
            let brr = vec![0, 0];
            let forwarded = ipv6(
                0,
                0,
                135,
                63,
                cn(),
                hoa(),
                &mobility_header(cn(), hoa(), 0, &brr),
            );
            let mut input = eth(ROUTER_MAC, HA_MAC);
            input.extend(&forwarded);
            let before = counter(dp, "tc_encap") + counter(dp, "tc_encap_neigh");
            let (_, out) = run_tc(dp, fx.ifindex, &input).unwrap();
            assert_eq!(
                counter(dp, "tc_encap") + counter(dp, "tc_encap_neigh"),
                before + 1
            );
            // The outer header to the CoA, the packet unchanged inside.
            let outer = ipv6(0, 0, 41, 64, ha(), coa(), &forwarded);
            assert_eq!(&out[14..], &outer[..], "{out:02x?}");

            // The HA's own BA (status 0) to the HoA, unmarked: the mobile node is at home.
            let mut ba_body = vec![0, 0, 0, 9, 0, 0];
            ba_body.extend_from_slice(&[1, 2, 0, 0]); // PadN: 8-byte alignment (§6.2.1)
            let own = ipv6(
                0,
                0,
                135,
                64,
                ha(),
                hoa(),
                &mobility_header(ha(), hoa(), 6, &ba_body),
            );
            let mut input = eth(ROUTER_MAC, HA_MAC);
            input.extend(&own);
            assert_eq!(run_tc(dp, fx.ifindex, &input).unwrap(), (0, input.clone()));
        },
    )
}
