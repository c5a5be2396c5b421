//! Our mobile node against a home agent nobody on this project wrote: scapy plays the HA on the
//! MN's foreign link, decodes our BU (Home Address option, flags, sequence, checksum) and
//! answers with its own BA carrying a type 2 routing header — which our MN must accept on a
//! kernel without CONFIG_IPV6_MIP6 — then asks for a refresh with a Binding Refresh Request,
//! which our MN answers with the next BU (RFC 6275 §11.7.4).

use std::time::Duration;

use tests::{
    Netns, TempDir, require_root,
    topology::{Hagent, addr, veth},
};

const HA: &str = "2001:db8:bee5::c001:babe";
const HOA: &str = "2001:db8:bee5::dead:face";
const COA: &str = "2001:db8:f00d::dead:face";

#[test]
fn our_mobile_node_registers_with_a_scapy_home_agent() -> anyhow::Result<()> {
    if !require_root("our_mobile_node_registers_with_a_scapy_home_agent") {
        return Ok(());
    }
    let mn = Netns::new("mn")?;
    let ha = Netns::new("scapy-ha")?;
    veth(&mn, "fa0", &ha, "eth0")?;
    // The scapy side is the MN's router and, for this test, the HA itself.
    addr(&ha, "eth0", "2001:db8:f00d::1/64")?;
    addr(&ha, "eth0", &format!("{HA}/128"))?;
    addr(&mn, "fa0", &format!("{COA}/64"))?;
    mn.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:f00d::1",
        "dev",
        "fa0",
        "mtu",
        "1460",
    ])?;
    let dir = TempDir::new("scapy-ha")?;
    let mut scapy = tests::scapy::spawn(
        &ha,
        &[
            "ha",
            "--ha",
            HA,
            "--iface",
            "eth0",
            "--timeout",
            "20",
            "--then-brr",
        ],
        &dir.join("scapy.log"),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let config = format!(
        "role = \"mobile_node\"\n[mobile_node]\nhome_address = \"{HOA}\"\nhome_agent = \"{HA}\"\nhome_interface = \"home0\"\n[dataplane]\ninterfaces = [\"fa0\"]\nmax_bindings = 16\nmax_prefixes = 16\n"
    );
    let daemon = Hagent::start(&mn, &config)?;
    let bu = tests::scapy::first_json(&mut scapy, "scapy to see the BU", Duration::from_secs(20))?;
    assert_eq!(bu["coa"], COA, "{bu}");
    assert_eq!(bu["hoa"], HOA, "Home Address option: {bu}");
    assert_eq!(bu["checksum_ok"], true, "MH checksum over the HoA: {bu}");
    let flags = bu["flags"].as_str().unwrap_or("");
    assert!(
        flags.contains('A') && flags.contains('H'),
        "A and H flags: {bu}"
    );
    // The Binding Refresh Request scapy sent after its BA got a new BU at once (§11.7.4).
    let next = bu["seq"].as_u64().unwrap_or(0) + 1;
    assert_eq!(bu["after_brr_seq"], next, "{bu}\n{}", daemon.log());
    let s = daemon.stats()?;
    assert_eq!(s["mobile_node"]["sequence"], next, "{s}");
    assert!(
        s["counters"]
            .as_array()
            .unwrap()
            .iter()
            // The BA and the BRR, each with a type 2 routing header.
            .any(|c| c["name"] == "mn_rh2_rewritten" && c["packets"] == 2),
        "{s}"
    );
    Ok(())
}
