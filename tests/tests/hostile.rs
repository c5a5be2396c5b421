//! The home agent as an attacker on the foreign link (and an operator's typo) finds it, in the
//! seed's topology, with scapy as the independent peer: Binding Updates that would bind the
//! HA's own or anycast addresses, or send the BA to an address that is not unicast routable,
//! are discarded before any work; static bindings never claim the HA's routes; the data plane
//! answers Neighbor Solicitations for bound home addresses (and defends them against DAD
//! probes); a flood of new home addresses neither holds back the ACL's mobile node nor the
//! CLI, fills the cache no further than its bound, and SIGTERM in the middle of it leaves
//! nothing behind. Behaviour is asserted, not timing (that is `cargo xtask bench signalling`).

use std::time::Duration;

use serde_json::Value;
use tests::{
    flood::Flood,
    packet::addr,
    require_root,
    scapy::{mac, run as scapy},
    topology::{Hagent, SeedLab, seed},
    wait_for,
};

/// A Neighbor Solicitation for the seed's HoA from `src` on the home router's home link;
/// the answering NA (or a timeout after `timeout` seconds).
fn solicit(lab: &SeedLab, src: &str, timeout: &str) -> anyhow::Result<Value> {
    let args = [
        "ns",
        "--iface",
        "home0",
        "--src",
        src,
        "--target",
        seed::HOA,
        "--timeout",
        timeout,
    ];
    scapy(&lab.router, &args)
}

/// A BU from the MN's namespace (source = the seed's CoA) for `hoa`, optionally with an
/// Alternate Care-of Address option; waits `timeout` seconds for its BA.
fn bu(
    lab: &SeedLab,
    hoa: &str,
    alt_coa: Option<&str>,
    seq: u16,
    timeout: &str,
) -> anyhow::Result<Value> {
    let mac = mac(&lab.router, "foreign0")?;
    let seq = seq.to_string();
    let mut args = vec![
        "bu",
        "--coa",
        seed::COA,
        "--ha",
        seed::HA,
        "--hoa",
        hoa,
        "--seq",
        &seq,
        "--lifetime",
        "100",
        "--router-mac",
        &mac,
        "--timeout",
        timeout,
    ];
    if let Some(a) = alt_coa {
        args.extend_from_slice(&["--alt-coa", a]);
    }
    scapy(&lab.mn, &args)
}

fn config(default_acl: &str, extra: &str) -> String {
    format!(
        "role = \"home_agent\"\n\n[home_agent]\naddresses = [\"{}\"]\ndefault_acl = \"{default_acl}\"\n\n[[home_agent.acl]]\nhoa = \"{}\"\naction = \"allow\"\n{extra}\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = 1024\nmax_prefixes = 64\n",
        seed::HA,
        seed::HOA
    )
}

fn stats(ha: &Hagent) -> anyhow::Result<Value> {
    ha.stats()
}

fn bindings(ha: &Hagent) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&ha.cli(&["bindings", "--json"])?)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

#[test]
fn hostile_binding_updates_are_discarded_before_any_work_rfc6275_9_5_1() -> anyhow::Result<()> {
    if !require_root("hostile_binding_updates_are_discarded_before_any_work_rfc6275_9_5_1") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    // `allow`: the policy under which one BU used to hijack the HA's own address.
    let ha = Hagent::start(&lab.ha, &config("allow", ""))?;
    // The HA's own address, the home-agents anycast address (RFC 2526 ID 0x7e), the home
    // prefix's Subnet-Router anycast address: never a home address.
    for hoa in [
        seed::HA,
        "2001:db8:bee5::fdff:ffff:ffff:fffe",
        "2001:db8:bee5::",
    ] {
        let ba = bu(&lab, hoa, None, 1, "1")?;
        assert_eq!(ba["timeout"], true, "no BA for HoA {hoa}: {ba}");
    }
    // A care-of address that is not unicast routable, or ours, or at home: no BA to it
    // (RFC 6275 §9.5.1), not even for the ACL's HoA.
    for coa in [
        "::",
        "::1",
        "::ffff:10.0.0.1",
        "ff0e::1",
        "fe80::1",
        seed::HA,
        "2001:db8:bee5::42",
    ] {
        let ba = bu(&lab, seed::HOA, Some(coa), 1, "1")?;
        assert_eq!(ba["timeout"], true, "no BA for CoA {coa}: {ba}");
    }
    let s = stats(&ha)?;
    let r = &s["home_agent"]["registrations"];
    assert_eq!(r["discarded_home_address"], 3, "{s}");
    assert_eq!(r["discarded_care_of_address"], 7, "{s}");
    assert_eq!(s["signalling"]["ba_sent"], 0, "no BA went anywhere: {s}");
    assert_eq!(s["home_agent"]["dad_probes"], 0, "{s}");
    assert!(bindings(&ha)?.is_empty());
    // The valid registration still works.
    let ba = bu(&lab, seed::HOA, None, 2, "4")?;
    assert_eq!(ba["status"], 0, "{ba}");
    assert!(ha.stop()?.success());
    Ok(())
}

#[test]
fn static_bindings_never_claim_the_home_agents_routes_or_addresses() -> anyhow::Result<()> {
    if !require_root("static_bindings_never_claim_the_home_agents_routes_or_addresses") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &config("deny", ""))?;
    let default_route = || -> anyhow::Result<String> {
        Ok(String::from_utf8(
            lab.ha.ip(&["-6", "route", "show", "default"])?.stdout,
        )?)
    };
    let before = default_route()?;
    assert!(before.contains(seed::ROUTER_HOME), "{before}");
    let refused = |args: &[&str], says: &str| -> anyhow::Result<()> {
        let mut all = vec!["binding", "add"];
        all.extend_from_slice(args);
        let e = ha.cli(&all).expect_err("refused").to_string();
        assert!(e.contains(says), "{args:?}: {e}");
        Ok(())
    };
    refused(
        &[seed::HOA, seed::COA, "--prefix", "::/0"],
        "mobile network prefix ::/0",
    )?;
    refused(
        &[seed::HOA, seed::COA, "--prefix", "2001:db8::/32"],
        "overlaps a home prefix",
    )?;
    refused(&[seed::HA, seed::COA], "this home agent's own addresses")?;
    refused(&[seed::HOA, "::ffff:10.0.0.1"], "IPv4-mapped")?;
    refused(&[seed::HOA, "2001:db8:bee5::42"], "inside a home prefix")?;
    // The home router's address is in use on the home link: DAD finds it.
    refused(&[seed::ROUTER_HOME, seed::COA], "in use on the home link")?;
    assert!(ha.cli(&["binding", "del", "2001:db8:bee5::77"]).is_err());
    assert_eq!(default_route()?, before, "the default route is untouched");
    let ours = lab.ha.ip(&["-6", "route", "show", "proto", "0xa6"])?;
    assert!(
        ours.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&ours.stdout)
    );
    assert!(bindings(&ha)?.is_empty());
    // Listings come a page at a time, limited or counted.
    for (i, coa) in ["2001:db8:f00d::1", "2001:db8:f00d::2", "2001:db8:f00d::3"]
        .iter()
        .enumerate()
    {
        ha.cli(&["binding", "add", &format!("2001:db8:bee5::1:{i}"), coa])?;
    }
    assert_eq!(ha.cli(&["bindings", "--count"])?.trim(), "3");
    let two: Value = serde_json::from_str(&ha.cli(&["bindings", "--json", "--limit", "2"])?)?;
    assert_eq!(two.as_array().map(Vec::len), Some(2), "{two}");
    assert_eq!(
        two[0]["hoa"], "2001:db8:bee5::1:0",
        "in home address order: {two}"
    );
    assert_eq!(bindings(&ha)?.len(), 3);
    assert!(ha.stop()?.success());
    Ok(())
}

#[test]
fn the_data_plane_answers_solicitations_for_bound_home_addresses_rfc6275_10_4_1()
-> anyhow::Result<()> {
    if !require_root("the_data_plane_answers_solicitations_for_bound_home_addresses_rfc6275_10_4_1")
    {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &config("deny", ""))?;
    ha.cli(&["binding", "add", seed::HOA, seed::COA])?;
    let ha_mac = mac(&lab.ha, "eth0")?;
    // The home router resolves the HoA.
    let na = solicit(&lab, seed::ROUTER_HOME, "3")?;
    assert_eq!(na["tlla"], ha_mac.as_str(), "{na}");
    assert_eq!(na["eth_src"], ha_mac.as_str(), "{na}");
    assert_eq!(na["src"], seed::HA, "{na}");
    assert_eq!(na["dst"], seed::ROUTER_HOME, "{na}");
    assert_eq!(
        (na["S"].as_u64(), na["O"].as_u64(), na["R"].as_u64()),
        (Some(1), Some(0), Some(0)),
        "{na}"
    );
    assert_eq!(na["hlim"], 255, "{na}");
    // A node probing the HoA (the mobile node back home, before it deregisters): the HA
    // defends it, to all nodes.
    let na = solicit(&lab, "::", "3")?;
    assert_eq!(na["dst"], "ff02::1", "{na}");
    assert_eq!(na["eth_dst"], "33:33:00:00:00:01", "{na}");
    assert_eq!(na["S"], 0, "{na}");
    assert_eq!(na["tlla"], ha_mac.as_str(), "{na}");
    assert!(ha.counter("nd_proxy_answered")? >= 1);
    assert!(ha.counter("nd_proxy_dad_answered")? >= 1);
    // No kernel entry per binding.
    let proxy = lab.ha.ip(&["-6", "neigh", "show", "proxy"])?;
    assert!(
        proxy.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&proxy.stdout)
    );
    // Unbound, nobody answers for it.
    ha.cli(&["binding", "del", seed::HOA])?;
    let na = solicit(&lab, seed::ROUTER_HOME, "1")?;
    assert_eq!(na["timeout"], true, "{na}");
    assert!(ha.stop()?.success());
    Ok(())
}

/// What hagent may have left in the HA's namespace: routes of ours, neighbour entries with
/// its MAC, XDP on the interface, allmulti.
fn leftovers(lab: &SeedLab, ha_mac: &str) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let routes = String::from_utf8(lab.ha.ip(&["-6", "route", "show", "proto", "0xa6"])?.stdout)?;
    if !routes.trim().is_empty() {
        found.push(format!("routes: {routes}"));
    }
    let neigh = String::from_utf8(lab.ha.ip(&["-6", "neigh", "show", "dev", "eth0"])?.stdout)?;
    for l in neigh.lines().filter(|l| l.contains(ha_mac)) {
        found.push(format!("neighbour: {l}"));
    }
    let proxy = String::from_utf8(lab.ha.ip(&["-6", "neigh", "show", "proxy"])?.stdout)?;
    if !proxy.trim().is_empty() {
        found.push(format!("proxy: {proxy}"));
    }
    let link = String::from_utf8(lab.ha.ip(&["link", "show", "eth0"])?.stdout)?;
    if link.contains("xdp") || link.contains("ALLMULTI") {
        found.push(format!("link: {link}"));
    }
    Ok(found)
}

#[test]
fn a_flood_of_new_home_addresses_holds_back_neither_the_acl_nor_the_cli() -> anyhow::Result<()> {
    if !require_root("a_flood_of_new_home_addresses_holds_back_neither_the_acl_nor_the_cli") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha_mac = mac(&lab.ha, "eth0")?;
    // The seed's policy: deny all but the ACL's mobile node.
    let ha = Hagent::start(&lab.ha, &config("deny", ""))?;
    // The attacker: another node (the correspondent's link), its BAs not in the way of the
    // mobile node's.
    let flood = Flood::start(
        &lab.cn,
        addr(seed::CN),
        addr(seed::HA),
        addr("2001:db8:bee5::"),
        Duration::from_secs(20),
        5_000_000,
    )?;
    wait_for("the flood to reach the HA", Duration::from_secs(10), || {
        let s = stats(&ha)?;
        Ok((s["signalling"]["bu_received"].as_u64().unwrap_or(0) > 1000).then_some(()))
    })?;
    // During it: the ACL's mobile node registers, and the CLI answers.
    let ba = bu(&lab, seed::HOA, None, 1, "5")?;
    assert_eq!(ba["status"], 0, "{ba} {}", stats(&ha)?);
    let b = bindings(&ha)?;
    assert_eq!(b.len(), 1, "only the ACL's mobile node is bound: {b:?}");
    assert_eq!(b[0]["hoa"], seed::HOA);
    assert_eq!(ha.cli(&["bindings", "--count"])?.trim(), "1");
    let during = stats(&ha)?;
    assert!(flood.sent() > 1000, "the flood is running");
    let sent = flood.finish()?;
    let s = stats(&ha)?;
    let r = &s["home_agent"]["registrations"];
    let turned_away = r["refused"]["129"].as_u64().unwrap_or(0)
        + r["dropped_rate_limited"].as_u64().unwrap_or(0)
        + s["home_agent"]["dropped_queue_full"].as_u64().unwrap_or(0);
    assert!(turned_away > 1000, "flood BUs were turned away: {s}");
    assert_eq!(
        s["home_agent"]["dad_probes"], 0,
        "no DAD for refused HoAs: {s}"
    );
    eprintln!(
        "flood: {sent} BUs sent; during it: {}",
        during["home_agent"]
    );

    // SIGTERM in the middle of a flood ends the daemon and leaves nothing behind.
    // The attacker: another node (the correspondent's link), its BAs not in the way of the
    // mobile node's.
    let flood = Flood::start(
        &lab.cn,
        addr(seed::CN),
        addr(seed::HA),
        addr("2001:db8:bee5::"),
        Duration::from_secs(20),
        5_000_000,
    )?;
    wait_for("the second flood", Duration::from_secs(10), || {
        Ok((flood.sent() > 10_000).then_some(()))
    })?;
    let status = ha.stop()?;
    assert!(status.success(), "{status}");
    drop(flood);
    let left = leftovers(&lab, &ha_mac)?;
    assert!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

#[test]
fn a_flood_under_allow_fills_the_cache_to_its_bound_and_evicts_nothing() -> anyhow::Result<()> {
    if !require_root("a_flood_under_allow_fills_the_cache_to_its_bound_and_evicts_nothing") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    // 64 bindings, one kept for the ACL's HoA; DAD on, at most 16 probes at once; the flood's
    // source may register freely (the per-source limit is the other test's subject).
    let c = config(
        "allow",
        "\n[home_agent.limits]\nmax_pending_dad = 16\nregistrations_per_source = 100000\nregistration_burst_per_source = 100000\n",
    )
    .replace("max_bindings = 1024", "max_bindings = 64");
    let ha = Hagent::start(&lab.ha, &c)?;
    // The attacker: another node (the correspondent's link), its BAs not in the way of the
    // mobile node's.
    let flood = Flood::start(
        &lab.cn,
        addr(seed::CN),
        addr(seed::HA),
        addr("2001:db8:bee5::"),
        Duration::from_secs(60),
        50_000_000,
    )?;
    wait_for("the cache to fill", Duration::from_secs(30), || {
        let s = stats(&ha)?;
        let full = s["bindings"].as_u64() == Some(63)
            && s["home_agent"]["registrations"]["refused"]["130"]
                .as_u64()
                .unwrap_or(0)
                > 0;
        Ok(full.then_some(()))
    })?;
    let s = stats(&ha)?;
    assert!(
        s["home_agent"]["dad_probes"].as_u64().unwrap() <= 16,
        "DAD in flight stays at its bound: {s}"
    );
    // The room kept for the ACL's HoA is there.
    let ba = bu(&lab, seed::HOA, None, 1, "5")?;
    assert_eq!(ba["status"], 0, "{ba} {}", stats(&ha)?);
    let n = flood.finish()?;
    let s = stats(&ha)?;
    assert_eq!(s["bindings"], 64, "{s}");
    assert_eq!(
        s["home_agent"]["registrations"]["removed"], 0,
        "no live binding evicted: {s}"
    );
    assert_eq!(bindings(&ha)?.len(), 64);
    eprintln!("flood of {n} BUs: {}", s["home_agent"]);
    assert!(ha.stop()?.success());
    Ok(())
}
