//! A mutation fuzz of the XDP and TC programs under BPF_PROG_TEST_RUN: a million frames (more
//! with `HAGENT_BPF_FUZZ_RUNS`) grown from valid seeds — tunnel packets both ways, Binding
//! Updates with a Home Address option, Neighbor Solicitations and DAD probes, packets for
//! mobile network prefixes, too big and too small for the tunnel — by bit flips, byte and field
//! overwrites with addresses that matter, next-header and hop-limit swaps, truncation and
//! growth. Every output is checked against what the programs may do, independently of how
//! they do it:
//!
//! - nothing is forwarded that matches no binding: every XDP_TX frame is an encapsulation
//!   towards the care-of address of the binding of its destination, a decapsulation or
//!   re-encapsulation of a tunnel packet from the care-of address of its inner source's
//!   binding, a Packet Too Big to the sender of a packet for a bound address, or a Neighbor
//!   Advertisement for a bound home address answering a solicitation for it;
//! - a passed frame is the frame that came in, but for the two rewrites the design names (the
//!   Home Address option swapped, a genuine tunnel packet decapsulated);
//! - a reverse-tunnelled packet whose outer source is not its binding's care-of address is
//!   always dropped.
//!
//! The PRNG is seeded (`HAGENT_BPF_FUZZ_SEED`), so a failure replays.

use std::net::Ipv6Addr;

use aya::programs::{TestRun, TestRunOptions};
use ha_common::abi::BindingEntry;
use hagent::dataplane::{Dataplane, DataplaneOptions, Role};
use tests::{
    Netns,
    packet::{Mac, addr, eth, icmpv6, ipv6, pattern, udp},
    require_root,
    topology::seed,
};

const HA_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_OK: u32 = 0;
const TC_SHOT: u32 = 2;
const TC_REDIRECT: u32 = 7;

const MNP: &str = "2001:db8:100::";
const MNP_COA: &str = "2001:db8:f00f::1";
const SMALL_PATH_HOA: &str = "2001:db8:bee5::5";
const SMALL_PATH_COA: &str = "2001:db8:f00e::5";

/// The bindings the fixture holds: (HoA or prefix, prefix length, remote, home link).
fn table() -> Vec<(Ipv6Addr, u8, Ipv6Addr)> {
    vec![
        (addr(seed::HOA), 128, addr(seed::COA)),
        (addr(SMALL_PATH_HOA), 128, addr(SMALL_PATH_COA)),
        (addr(MNP), 48, addr(MNP_COA)),
    ]
}

/// The binding of `a` as the data plane looks it up: exact, then the prefix.
fn bound(a: &[u8]) -> Option<(Ipv6Addr, bool)> {
    let a = Ipv6Addr::from(<[u8; 16]>::try_from(a).ok()?);
    table()
        .into_iter()
        .filter(|(p, l, _)| {
            let mask = if *l == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(*l))
            };
            u128::from(*p) & mask == u128::from(a) & mask
        })
        .max_by_key(|(_, l, _)| *l)
        .map(|(_, l, r)| (r, l == 128))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let (ha, hoa, coa, cn) = (
        addr(seed::HA),
        addr(seed::HOA),
        addr(seed::COA),
        addr(seed::CN),
    );
    let frame = |p: Vec<u8>| {
        let mut f = eth(HA_MAC, PEER_MAC);
        f.extend(p);
        f
    };
    let mut v = Vec::new();
    v.push(frame(ipv6(
        0,
        1,
        17,
        64,
        cn,
        hoa,
        &udp(cn, hoa, 1, 2, &pattern(32)),
    )));
    let m = addr("2001:db8:100:7::9");
    v.push(frame(ipv6(
        0,
        1,
        17,
        9,
        cn,
        m,
        &udp(cn, m, 1, 2, &pattern(32)),
    )));
    let inner = ipv6(0, 0, 17, 64, hoa, cn, &udp(hoa, cn, 2, 1, &pattern(24)));
    v.push(frame(ipv6(0, 0, 41, 60, coa, ha, &inner)));
    v.push(frame(ipv6(
        0,
        0,
        41,
        60,
        addr("2001:db8:f00d::bad"),
        ha,
        &inner,
    )));
    let to_mnp = ipv6(0, 0, 17, 64, hoa, m, &udp(hoa, m, 2, 1, &pattern(24)));
    v.push(frame(ipv6(0, 0, 41, 60, coa, ha, &to_mnp)));
    let mh = [59u8, 1, 5, 0, 0, 0, 0, 1, 0xc0, 0, 0, 10, 0, 0, 0, 0];
    let mut d = vec![135u8, 2, 1, 2, 0, 0, 0xc9, 16];
    d.extend_from_slice(&hoa.octets());
    d.extend_from_slice(&mh);
    v.push(frame(ipv6(0, 0, 60, 64, coa, ha, &d)));
    let o = hoa.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    let router = addr(seed::ROUTER_HOME);
    let mut ns = vec![0u8; 4];
    ns.extend_from_slice(&o);
    let mut with_slla = ns.clone();
    with_slla.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0xaa]);
    v.push(frame(ipv6(
        0,
        0,
        58,
        255,
        router,
        group,
        &icmpv6(router, group, 135, 0, &with_slla),
    )));
    let any = Ipv6Addr::UNSPECIFIED;
    v.push(frame(ipv6(
        0,
        0,
        58,
        255,
        any,
        group,
        &icmpv6(any, group, 135, 0, &ns),
    )));
    let all: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut na = vec![0x20u8, 0, 0, 0];
    na.extend_from_slice(&o);
    v.push(frame(ipv6(
        0,
        0,
        58,
        255,
        router,
        all,
        &icmpv6(router, all, 136, 0, &na),
    )));
    v.push(frame(ipv6(
        0,
        0,
        17,
        64,
        cn,
        hoa,
        &udp(cn, hoa, 1, 2, &pattern(1452)),
    )));
    let s = addr(SMALL_PATH_HOA);
    v.push(frame(ipv6(
        0,
        0,
        17,
        64,
        cn,
        s,
        &udp(cn, s, 1, 2, &pattern(1000)),
    )));
    v.push(frame(ipv6(
        0,
        0,
        17,
        64,
        cn,
        addr("2001:db8:cafe::99"),
        &pattern(40),
    )));
    v
}

/// Addresses a mutation writes over an address field.
fn dictionary() -> Vec<[u8; 16]> {
    [
        seed::HA,
        seed::HOA,
        seed::COA,
        seed::CN,
        SMALL_PATH_HOA,
        SMALL_PATH_COA,
        MNP,
        "2001:db8:100:ffff::1",
        MNP_COA,
        "::",
        "ff02::1",
        "ff02::1:ffad:face",
        "fe80::1",
        "2001:db8:f00d::bad",
    ]
    .iter()
    .map(|a| addr(a).octets())
    .collect()
}

fn mutate(rng: &mut Rng, f: &mut Vec<u8>, dict: &[[u8; 16]]) {
    for _ in 0..=rng.below(3) {
        match rng.below(8) {
            0 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            1 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            2 => {
                // An address field of the outer or the inner header.
                let off = [22usize, 38, 62, 78][rng.below(4)];
                if f.len() >= off + 16 {
                    f[off..off + 16].copy_from_slice(&dict[rng.below(dict.len())]);
                }
            }
            3 => {
                let off = [20usize, 60][rng.below(2)];
                if f.len() > off {
                    f[off] = [0u8, 6, 17, 41, 43, 50, 58, 59, 60, 135][rng.below(10)];
                }
            }
            4 => {
                let off = [21usize, 61][rng.below(2)];
                if f.len() > off {
                    f[off] = [0u8, 1, 2, 255][rng.below(4)];
                }
            }
            5 => {
                let n = rng.below(f.len() + 1);
                f.truncate(n);
            }
            6 if f.len() < 1600 => {
                for _ in 0..rng.below(64) {
                    f.push(rng.next() as u8);
                }
            }
            _ => {
                // The payload length of the outer or the inner header.
                let off = [18usize, 58][rng.below(2)];
                if f.len() >= off + 2 {
                    let v = (rng.next() as u16) % 1600;
                    f[off..off + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
    }
}

/// An IPv6 header at `off` as the programs parse it: version 6 and the whole packet present.
fn header(f: &[u8], off: usize) -> Option<(&[u8], usize)> {
    let h = f.get(off..off + 40)?;
    let total = 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
    (h[0] >> 4 == 6 && off + total <= f.len()).then_some((h, total))
}

/// A reverse-tunnel packet to the HA whose inner source is bound: Some(outer source is that
/// binding's care-of address).
fn tunnel_from_binding(f: &[u8]) -> Option<bool> {
    if f.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    let (outer, _) = header(f, 14)?;
    if outer[6] != 41 || outer[24..40] != addr(seed::HA).octets() {
        return None;
    }
    let (inner, _) = header(f, 54)?;
    let (remote, _) = bound(&inner[8..24])?;
    Some(outer[8..24] == remote.octets())
}

/// What the fuzz found wrong with one run, if anything.
fn check_xdp(input: &[u8], action: u32, out: &[u8]) -> Result<(), String> {
    let ha = addr(seed::HA).octets();
    if tunnel_from_binding(input) == Some(false) && action != XDP_DROP {
        return Err("a spoofed reverse tunnel packet was not dropped".into());
    }
    match action {
        XDP_DROP => Ok(()),
        XDP_PASS => {
            if out == input {
                return Ok(());
            }
            // A genuine tunnel packet, decapsulated for the kernel.
            if tunnel_from_binding(input) == Some(true)
                && out.len() + 40 == input.len()
                && out[..14] == input[..14]
                && out[14..] == input[54..]
            {
                return Ok(());
            }
            // The Home Address option swapped: source ↔ option, option retyped 0x1E.
            if out.len() == input.len() && input.len() > 54 && input[20] == 60 {
                let diff: Vec<usize> = (0..out.len()).filter(|&i| out[i] != input[i]).collect();
                if let Some(pos) = (54..input.len().saturating_sub(17))
                    .find(|&p| input[p] == 0xc9 && input[p + 1] == 16 && out[p] == 0x1e)
                    && out[22..38] == input[pos + 2..pos + 18]
                    && out[pos + 2..pos + 18] == input[22..38]
                    && diff
                        .iter()
                        .all(|&i| (22..38).contains(&i) || (pos..pos + 18).contains(&i))
                {
                    return Ok(());
                }
            }
            Err("a passed frame was changed".into())
        }
        XDP_TX => {
            let (oh, _) = header(out, 14).ok_or("a transmitted frame without IPv6")?;
            let (ih, _) = header(input, 14).ok_or("transmitted what was not IPv6")?;
            let hop_down = |a: &[u8], b: &[u8]| {
                a.len() == b.len()
                    && a.len() > 8
                    && a[7] == b[7].wrapping_sub(1)
                    && a[..7] == b[..7]
                    && a[8..] == b[8..]
            };
            // Encapsulation towards the binding of the destination.
            if oh[6] == 41
                && oh[8..24] == ha
                && let Some((remote, _)) = bound(&ih[24..40])
                && oh[24..40] == remote.octets()
                && hop_down(&out[54..], &input[14..])
            {
                return Ok(());
            }
            if tunnel_from_binding(input) == Some(true) {
                // Decapsulated and forwarded, or tunnelled on to another binding.
                if hop_down(&out[14..], &input[54..]) {
                    return Ok(());
                }
                let (inner, _) = header(input, 54).ok_or("no inner header")?;
                if oh[6] == 41
                    && let Some((remote, _)) = bound(&inner[24..40])
                    && oh[24..40] == remote.octets()
                    && hop_down(&out[54..], &input[54..])
                {
                    return Ok(());
                }
            }
            // A Packet Too Big to the sender of a packet for a bound address.
            if oh[6] == 58
                && out.get(54) == Some(&2)
                && oh[8..24] == ha
                && oh[24..40] == ih[8..24]
                && bound(&ih[24..40]).is_some()
            {
                return Ok(());
            }
            // An advertisement for a bound home address, answering a solicitation for it.
            if oh[6] == 58
                && out.get(54) == Some(&136)
                && ih[6] == 58
                && input.get(54) == Some(&135)
                && out.get(62..78) == input.get(62..78)
                && matches!(bound(&out[62..78]), Some((_, true)))
            {
                return Ok(());
            }
            Err("a frame was forwarded that no binding explains".into())
        }
        a => Err(format!("action {a}")),
    }
}

/// The TC program sends what the node's kernel sends: unchanged, or tunnelled to the binding
/// of its destination, or turned into an answer for the kernel itself.
fn check_tc(input: &[u8], action: u32, out: &[u8]) -> Result<(), String> {
    match action {
        TC_SHOT => Ok(()),
        TC_OK if out == input => Ok(()),
        TC_OK | TC_REDIRECT => {
            // The kernel hands TC well-formed packets; a fuzzed length field is no threat, and
            // the program sizes the tunnel by the packet, not the field.
            let oh = out.get(14..54).ok_or("no IPv6 out")?;
            let ih = input.get(14..54).ok_or("no IPv6 in")?;
            if oh[6] == 41
                && let Some((remote, _)) = bound(&ih[24..40])
                && oh[24..40] == remote.octets()
                && out[54..] == input[14..]
            {
                return Ok(());
            }
            if action == TC_REDIRECT
                && oh[6] == 58
                && ((out.get(54) == Some(&136)
                    && input.get(54) == Some(&135)
                    && matches!(bound(&out[62..78]), Some((_, true))))
                    || (out.get(54) == Some(&2)
                        && oh[24..40] == ih[8..24]
                        && bound(&ih[24..40]).is_some()))
            {
                return Ok(());
            }
            Err("the TC program sent what no binding explains".into())
        }
        a => Err(format!("action {a}")),
    }
}

fn entry(remote: &str, id: u32, home: u32) -> BindingEntry {
    BindingEntry {
        local: addr(seed::HA).octets(),
        remote: addr(remote).octets(),
        flags: 0,
        binding_id: id,
        home_ifindex: home,
        _pad: 0,
    }
}

#[test]
fn mutated_frames_never_make_the_programs_forward_what_no_binding_explains() -> anyhow::Result<()> {
    if !require_root("mutated_frames_never_make_the_programs_forward_what_no_binding_explains") {
        return Ok(());
    }
    let runs: u64 = std::env::var("HAGENT_BPF_FUZZ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed_value: u64 = std::env::var("HAGENT_BPF_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let (ns, ifindex) = tests::topology::forwarding_namespace("fuzz")?;
    let view = Netns::attach(ns.name());
    let _ = &view;
    let report = ns.run_in(move || -> anyhow::Result<String> {
        let mut dp = Dataplane::load(&DataplaneOptions {
            role: Role::HomeAgent,
            max_bindings: 64,
            max_prefixes: 64,
            ..Default::default()
        })?;
        dp.add_local_address(addr(seed::HA))?;
        dp.set_iface(ifindex, HA_MAC, hagent::config::XdpMode::Native)?;
        dp.set_binding(addr(seed::HOA), &entry(seed::COA, 7, ifindex))?;
        dp.set_binding(addr(SMALL_PATH_HOA), &entry(SMALL_PATH_COA, 9, ifindex))?;
        dp.set_prefix(addr(MNP), 48, &entry(MNP_COA, 8, ifindex))?;
        let mut ring = dp.take_punt_ring()?;
        let seeds = seeds();
        let dict = dictionary();
        let mut rng = Rng(seed_value | 1);
        let mut ctx = vec![0u8; 24];
        let mut out = vec![0u8; 4096];
        let mut actions = [0u64; 8];
        let tc_runs = runs / 4;
        let mut tc_actions = [0u64; 8];
        let mut skb = vec![0u8; 192];
        skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        for i in 0..runs + tc_runs {
            let mut f = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut f, &dict);
            let xdp = i < runs;
            // The kernel's test run wants a whole Ethernet header — and, for TC, a whole IPv6
            // header behind an IPv6 EtherType (as every packet the kernel sends has).
            if f.len() < 14 || (!xdp && f.len() < 54) {
                f.resize(if xdp { 14 } else { 54 }, 0);
            }
            let r = if xdp {
                for (k, v) in [0u32, f.len() as u32, 0, ifindex, 0, 0].iter().enumerate() {
                    ctx[k * 4..k * 4 + 4].copy_from_slice(&v.to_ne_bytes());
                }
                dp.xdp()?.test_run(TestRunOptions {
                    data_in: Some(&f),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    ..Default::default()
                })
            } else {
                dp.tc()?.test_run(TestRunOptions {
                    data_in: Some(&f),
                    data_out: Some(&mut out),
                    ctx_in: Some(&skb),
                    ..Default::default()
                })
            };
            let r = r.map_err(|e| {
                anyhow::anyhow!(
                    "run {i}: the kernel refused the test run ({e:?}) of {} bytes: {}",
                    f.len(),
                    hex(&f)
                )
            })?;
            let o = &out[..r.data_size_out as usize];
            let verdict = if xdp {
                actions[(r.return_value as usize).min(7)] += 1;
                check_xdp(&f, r.return_value, o)
            } else {
                tc_actions[(r.return_value as usize).min(7)] += 1;
                check_tc(&f, r.return_value, o)
            };
            if let Err(what) = verdict {
                anyhow::bail!(
                    "run {i} ({}, seed {seed_value}): {what}\ninput  {}\noutput {} (action {})",
                    if xdp { "XDP" } else { "TC" },
                    hex(&f),
                    hex(o),
                    r.return_value
                );
            }
            while ring.next().is_some() {}
        }
        Ok(format!(
            "{runs} XDP runs: {} drop, {} pass, {} tx; {tc_runs} TC runs: {} ok, {} shot, {} redirect",
            actions[1], actions[2], actions[3], tc_actions[0], tc_actions[2], tc_actions[7]
        ))
    })??;
    eprintln!("{report}");
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
