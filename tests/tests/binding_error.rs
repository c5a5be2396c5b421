//! RFC 6275 §9.3.1: a packet with a Home Address option for which the home agent holds no
//! binding from that source is dropped and answered with a Binding Error, status 1, carrying
//! the home address — seen by scapy on the foreign link; with the binding the same packet is
//! accepted (no Binding Error).

use tests::{
    require_root,
    topology::{Hagent, SeedLab, ha_config, seed},
};

#[test]
fn a_home_address_option_without_a_binding_gets_a_binding_error_status_1() -> anyhow::Result<()> {
    if !require_root("a_home_address_option_without_a_binding_gets_a_binding_error_status_1") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    let echo = |timeout: &str| {
        tests::scapy::run(
            &lab.mn,
            &[
                "hao-echo",
                "--src",
                seed::COA,
                "--dst",
                seed::HA,
                "--hoa",
                seed::HOA,
                "--timeout",
                timeout,
            ],
        )
    };
    let be = echo("5")?;
    assert_eq!(be["status"], 1, "{be}\n{}", ha.cli(&["stats"])?);
    assert_eq!(be["src"], seed::HA, "{be}");
    assert_eq!(be["hoa"], seed::HOA, "{be}");
    assert_eq!(be["checksum_ok"], true, "{be}");

    // With the binding from that CoA the option is accepted: no Binding Error.
    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    // (More than the BE rate limit's second after the first.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let none = echo("2")?;
    assert_eq!(none["timeout"], true, "{none}");
    let s: serde_json::Value = serde_json::from_str(&ha.cli(&["stats", "--json"])?)?;
    let counter = |name: &str| {
        s["counters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c["packets"].as_u64())
    };
    assert_eq!(counter("drop_hao_no_binding"), Some(1), "{s}");
    assert_eq!(counter("hao_accepted"), Some(1), "{s}");
    Ok(())
}
