//! Return routability through the home agent, end to end in the seed lab with scapy on both
//! ends (RFC 6275 §5.2.5): a correspondent's Home Test, Binding Refresh Request and Binding
//! Error to a bound HoA arrive at the CoA inside the tunnel, with their MH checksums intact;
//! the mobile node's reverse-tunnelled Home Test Init reaches the correspondent from the HoA.

use std::time::Duration;

use serde_json::Value;
use tests::{
    require_root, scapy,
    topology::{Hagent, SeedLab, ha_config, seed},
};

#[test]
fn correspondent_signalling_reaches_the_mobile_node_through_the_tunnel() -> anyhow::Result<()> {
    if !require_root("correspondent_signalling_reaches_the_mobile_node_through_the_tunnel") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    let dir = tests::TempDir::new("rr")?;

    // CN → HoA: HoT, BRR, BE. At the CoA (scapy listening on the MN's link): IPv6-in-IPv6
    // from the HA with each MH inside.
    let mut listener = scapy::spawn(
        &lab.mn,
        &["tunnel", "--coa", seed::COA, "--duration", "4"],
        &dir.join("tunnel.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    let sent = scapy::run(&lab.cn, &["mh", "--dst", seed::HOA])?;
    assert_eq!(sent["sent"], serde_json::json!([3, 0, 7]), "{sent}");
    let got = scapy::first_json(
        &mut listener,
        "scapy's tunnel listener",
        Duration::from_secs(15),
    )?;
    let packets = got["packets"].as_array().cloned().unwrap_or_default();
    let mh: Vec<&Value> = packets.iter().filter(|p| !p["mh_type"].is_null()).collect();
    let types: Vec<u64> = mh.iter().filter_map(|p| p["mh_type"].as_u64()).collect();
    assert_eq!(types, vec![3, 0, 7], "{got}\n{}", ha.cli(&["stats"])?);
    for p in &mh {
        assert_eq!(p["outer_src"], seed::HA, "{p}");
        assert_eq!(p["inner_src"], seed::CN, "{p}");
        assert_eq!(p["inner_dst"], seed::HOA, "{p}");
        assert_eq!(p["mh_checksum_ok"], true, "{p}");
    }

    // MN → CN: a Home Test Init in the reverse tunnel; the CN sees it from the HoA.
    let mut sniffer = scapy::spawn(
        &lab.cn,
        &["sniff-mh", "--src", seed::HOA, "--timeout", "6"],
        &dir.join("sniff.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    let router_mac = scapy::mac(&lab.router, "foreign0")?;
    scapy::run(
        &lab.mn,
        &[
            "hoti",
            "--coa",
            seed::COA,
            "--ha",
            seed::HA,
            "--hoa",
            seed::HOA,
            "--cn",
            seed::CN,
            "--router-mac",
            &router_mac,
        ],
    )?;
    let got = scapy::first_json(
        &mut sniffer,
        "scapy's MH sniffer at the CN",
        Duration::from_secs(15),
    )?;
    assert_eq!(got["count"], 1, "{got}\n{}", ha.cli(&["stats"])?);
    let p = &got["packets"][0];
    assert_eq!(
        (p["mh_type"].as_u64(), p["dst"].as_str()),
        (Some(1), Some(seed::CN)),
        "{got}"
    );
    assert_eq!(p["checksum_ok"], true, "{got}");
    Ok(())
}
