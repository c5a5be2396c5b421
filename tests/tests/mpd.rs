//! Mobile Prefix Discovery answered by our home agent (RFC 6275 §10.6), scapy as the mobile
//! node: a reverse-tunnelled Mobile Prefix Solicitation from the bound home address gets a
//! Mobile Prefix Advertisement through the tunnel, echoing the identifier and listing the home
//! prefix (on-link, autonomous, router address = the home agent's); from an unbound home
//! address nothing comes back (the reverse tunnel's ingress check drops it).

use tests::{
    require_root,
    topology::{Hagent, SeedLab, ha_config, seed},
};

#[test]
fn a_mobile_prefix_solicitation_gets_the_home_prefix_through_the_tunnel() -> anyhow::Result<()> {
    if !require_root("a_mobile_prefix_solicitation_gets_the_home_prefix_through_the_tunnel") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    let router_mac = tests::scapy::mac(&lab.router, "foreign0")?;
    let mps = |timeout: &str| {
        tests::scapy::run(
            &lab.mn,
            &[
                "mps",
                "--coa",
                seed::COA,
                "--ha",
                seed::HA,
                "--hoa",
                seed::HOA,
                "--router-mac",
                &router_mac,
                "--timeout",
                timeout,
            ],
        )
    };
    // Not bound yet: no answer.
    let none = mps("2")?;
    assert_eq!(none["timeout"], true, "{none}");
    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    let mpa = mps("5")?;
    assert_eq!(
        mpa["outer_src"],
        seed::HA,
        "{mpa}\n{}",
        ha.cli(&["stats", "--json"])?
    );
    assert_eq!(mpa["inner_src"], seed::HA, "{mpa}");
    assert_eq!(mpa["inner_dst"], seed::HOA, "{mpa}");
    assert_eq!(mpa["id"], 0x4d50, "{mpa}");
    assert_eq!(
        mpa["prefixes"],
        serde_json::json!([{"prefix": seed::HA, "len": 64, "L": 1, "A": 1, "R": 1, "valid": 2592000}]),
        "{mpa}"
    );
    let s: serde_json::Value = serde_json::from_str(&ha.cli(&["stats", "--json"])?)?;
    assert_eq!(s["home_agent"]["dhaad"]["prefix_advertisements"], 1, "{s}");
    // The unbound one never reached the daemon: the reverse tunnel's ingress check dropped it
    // (RFC 6275 §10.4.5).
    let dropped = s["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "drop_decap_unknown_source")
        .map(|c| c["packets"].clone());
    assert_eq!(dropped, Some(serde_json::json!(1)), "{s}");
    Ok(())
}
