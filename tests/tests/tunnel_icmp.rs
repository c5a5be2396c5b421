//! ICMPv6 errors about the tunnel reach the original sender (RFC 2473 §8.1): the seed lab's
//! mobile node runs no tunnel endpoint, so its kernel answers every IPv6-in-IPv6 packet with a
//! Parameter Problem (unrecognised next header) to the home agent; the home agent turns it
//! into Destination Unreachable, code 3, for the correspondent, which `ping` shows.

use tests::{
    require_root,
    topology::{Hagent, SeedLab, ha_config, seed},
};

#[test]
fn a_tunnel_error_becomes_address_unreachable_for_the_correspondent() -> anyhow::Result<()> {
    if !require_root("a_tunnel_error_becomes_address_unreachable_for_the_correspondent") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    let out = lab
        .cn
        .command("ping")
        .args(["-6", "-n", "-c", "3", "-i", "0.5", "-W", "2", seed::HOA])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("From {} icmp_seq=", seed::HA))
            && text.contains("Destination unreachable: Address unreachable"),
        "{text}\n{}",
        ha.cli(&["stats", "--json"])?
    );
    let s: serde_json::Value = serde_json::from_str(&ha.cli(&["stats", "--json"])?)?;
    assert!(
        s["home_agent"]["dhaad"]["tunnel_errors_relayed"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{s}"
    );
    Ok(())
}
