//! Home registration end to end in the seed's topology with scapy as the mobile node (an
//! implementation nobody here wrote): the daemon runs from the seed talk's own mip6d.conf.
//!
//! BU → BA (status 0, sequence, RH2 with the HoA, valid checksum) → CN→HoA traffic arrives at
//! the CoA tunnelled → the reverse tunnel reaches the CN → a new CoA moves the traffic →
//! deregistration stops it; and the refusals: ACL (129), foreign prefix (132), replayed
//! sequence (135 with the last accepted one), bad checksum (no answer), lifetime expiry.

use std::{process::Command, time::Duration};

use serde_json::Value;
use tests::{
    Netns, require_root, run,
    topology::{Hagent, SeedLab, seed, seed_ha_mip6d_conf},
    wait_for,
};

const NEW_COA: &str = "2001:db8:f00d::beef";

struct Mn<'a> {
    ns: &'a Netns,
    router_mac: String,
}

impl Mn<'_> {
    fn scapy(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--router-mac", &self.router_mac]);
        tests::scapy::run(self.ns, &all)
    }

    fn bu(
        &self,
        hoa: &str,
        coa: &str,
        seq: u16,
        lifetime_units: u16,
        extra: &[&str],
    ) -> anyhow::Result<Value> {
        let (seq, life) = (seq.to_string(), lifetime_units.to_string());
        let mut args = vec![
            "bu",
            "--coa",
            coa,
            "--ha",
            seed::HA,
            "--hoa",
            hoa,
            "--seq",
            &seq,
            "--lifetime",
            &life,
        ];
        args.extend_from_slice(extra);
        self.scapy(&args)
    }
}

fn bindings(ha: &Hagent) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&ha.cli(&["bindings", "--json"])?)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn proxied(lab: &SeedLab, hoa: &str) -> anyhow::Result<bool> {
    let out = lab.ha.exec("ip", &["-6", "neigh", "show", "proxy"])?;
    Ok(String::from_utf8_lossy(&out.stdout).contains(hoa))
}

/// Pings the HoA from the CN (answers are not expected: scapy does not answer) while scapy
/// listens on the MN for tunnel packets to `coa`; returns what it saw.
fn tunnelled_to(lab: &SeedLab, mn: &Mn<'_>, coa: &str) -> anyhow::Result<Value> {
    let dir = tests::TempDir::new("tunnel")?;
    let mut listener = tests::scapy::spawn(
        &lab.mn,
        &["tunnel", "--coa", coa, "--duration", "3"],
        &dir.join("tunnel.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    let _ = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "3", "-i", "0.3", "-W", "1", seed::HOA])
        .output()?;
    let _ = &mn.router_mac;
    tests::scapy::first_json(
        &mut listener,
        "scapy's tunnel listener",
        Duration::from_secs(10),
    )
}

#[test]
fn scapy_mobile_node_registers_with_the_seed_config() -> anyhow::Result<()> {
    if !require_root("scapy_mobile_node_registers_with_the_seed_config") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let router_mac = tests::scapy::mac(&lab.router, "foreign0")?;
    let mn = Mn {
        ns: &lab.mn,
        router_mac,
    };
    let ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;

    // BU → BA: status 0, sequence echoed, type 2 routing header with the HoA, checksum valid.
    let ba = mn.bu(seed::HOA, seed::COA, 1, 100, &[])?;
    assert_eq!(ba["status"], 0, "{ba}");
    assert_eq!(ba["seq"], 1, "{ba}");
    assert_eq!(ba["lifetime"], 100, "{ba}");
    assert_eq!(
        ba["src"],
        seed::HA,
        "from the HA address the BU was sent to: {ba}"
    );
    assert_eq!(ba["dst"], seed::COA, "{ba}");
    assert_eq!(ba["rh2_type"], 2, "{ba}");
    assert_eq!(ba["rh2_segleft"], 1, "{ba}");
    assert_eq!(ba["rh2_hoa"], seed::HOA, "{ba}");
    assert_eq!(ba["checksum_ok"], true, "{ba}");
    let b = bindings(&ha)?;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["coa"], seed::COA);
    assert_eq!(b[0]["sequence"], 1);
    assert!(
        !proxied(&lab, seed::HOA)?,
        "no proxy ND entry: the data plane answers for the HoA"
    );

    // CN → HoA arrives at the CoA tunnelled from the HA.
    let seen = tunnelled_to(&lab, &mn, seed::COA)?;
    assert!(seen["count"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!(seen["packets"][0]["outer_src"], seed::HA);
    assert_eq!(seen["packets"][0]["inner_dst"], seed::HOA);
    // The home router found the HoA at the HA: the XDP program answered its solicitation.
    assert!(ha.counter("nd_proxy_answered")? >= 1);

    // Reverse tunnel: echo requests from the HoA reach the CN, its replies come back tunnelled.
    let rev = mn.scapy(&[
        "reverse",
        "--coa",
        seed::COA,
        "--ha",
        seed::HA,
        "--hoa",
        seed::HOA,
        "--cn",
        seed::CN,
        "--count",
        "3",
    ])?;
    assert_eq!(rev["replies"], 3, "{rev}");

    // A new CoA moves the traffic.
    lab.mn.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{NEW_COA}/64"),
        "dev",
        "eth0",
        "nodad",
    ])?;
    let ba = mn.bu(seed::HOA, NEW_COA, 2, 100, &[])?;
    assert_eq!(
        (ba["status"].as_u64(), ba["dst"].as_str()),
        (Some(0), Some(NEW_COA)),
        "{ba}"
    );
    assert_eq!(bindings(&ha)?[0]["coa"], NEW_COA);
    let seen = tunnelled_to(&lab, &mn, NEW_COA)?;
    assert!(
        seen["count"].as_u64().unwrap() >= 3,
        "traffic follows the new CoA: {seen}"
    );

    // Replayed sequence number: 135 carrying the last accepted one (RFC 6275 §9.5.1).
    let ba = mn.bu(seed::HOA, NEW_COA, 2, 100, &[])?;
    assert_eq!(
        (ba["status"].as_u64(), ba["seq"].as_u64()),
        (Some(135), Some(2)),
        "{ba}"
    );
    let ba = mn.bu(seed::HOA, NEW_COA, 1, 100, &[])?;
    assert_eq!(
        (ba["status"].as_u64(), ba["seq"].as_u64()),
        (Some(135), Some(2)),
        "{ba}"
    );

    // Not in the ACL (the seed's DefaultBindPolicy deny): 129.
    let ba = mn.bu("2001:db8:bee5::bad", seed::COA, 1, 100, &[])?;
    assert_eq!(ba["status"], 129, "{ba}");
    // Not a home address here: 132.
    let ba = mn.bu("2001:db8:cafe::77", seed::COA, 1, 100, &[])?;
    assert_eq!(ba["status"], 132, "{ba}");
    // Bad checksum: silently dropped.
    let ba = mn.bu(
        seed::HOA,
        NEW_COA,
        3,
        100,
        &["--bad-checksum", "--timeout", "2"],
    )?;
    assert_eq!(ba["timeout"], true, "{ba}");

    // Deregistration: status 0, lifetime 0; the binding and the proxy entry go.
    let ba = mn.bu(seed::HOA, NEW_COA, 4, 0, &[])?;
    assert_eq!(
        (ba["status"].as_u64(), ba["lifetime"].as_u64()),
        (Some(0), Some(0)),
        "{ba}"
    );
    assert!(bindings(&ha)?.is_empty());
    let seen = tunnelled_to(&lab, &mn, NEW_COA)?;
    assert_eq!(seen["count"], 0, "no tunnel after deregistration: {seen}");
    // A second deregistration: no binding → 133.
    let ba = mn.bu(seed::HOA, NEW_COA, 5, 0, &[])?;
    assert_eq!(ba["status"], 133, "{ba}");

    // Lifetime expiry: one 4-second unit, then the binding and its proxy entry are gone.
    let ba = mn.bu(seed::HOA, seed::COA, 6, 1, &[])?;
    assert_eq!(
        (ba["status"].as_u64(), ba["lifetime"].as_u64()),
        (Some(0), Some(1)),
        "{ba}"
    );
    assert_eq!(bindings(&ha)?.len(), 1);
    wait_for("the binding to expire", Duration::from_secs(15), || {
        Ok(bindings(&ha)?.is_empty().then_some(()))
    })?;
    let routes = run(Command::new("ip").args([
        "-n",
        lab.ha.name(),
        "-6",
        "route",
        "show",
        "proto",
        "0xa6",
    ]))?;
    assert!(routes.stdout.is_empty());

    let stats: Value = serde_json::from_str(&ha.cli(&["stats", "--json"])?)?;
    // Nine BUs were answered; the one with the bad checksum never reached the daemon (the
    // kernel checks MH checksums on raw MH sockets).
    assert_eq!(stats["signalling"]["ba_sent"], 9, "{stats}");
    assert_eq!(stats["signalling"]["bu_received"], 9, "{stats}");
    assert!(ha.stop()?.success());
    Ok(())
}
