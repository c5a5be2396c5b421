//! NEMO basic support (RFC 3963) end to end, scapy as the mobile router: implicit mode (R flag,
//! no Mobile Network Prefix option) registers the prefixes the ACL configures for the router,
//! and traffic to a host behind it is tunnelled to its CoA; a BU that would change the R flag
//! of the binding gets 139; implicit mode with no prefix configured gets 143.

use std::time::Duration;

use serde_json::Value;
use tests::{
    require_root,
    topology::{Hagent, SeedLab, seed},
};

const MNP: &str = "2001:db8:100::/48";
const BEHIND: &str = "2001:db8:100::1";
/// A mobile router the ACL allows but configures no prefix for.
const BARE: &str = "2001:db8:bee5::e000:1";

fn config() -> String {
    format!(
        "role = \"home_agent\"\n[home_agent]\naddresses = [\"{ha}\"]\ndefault_acl = \"deny\"\naccept_mobile_routers = true\n\n[[home_agent.acl]]\nhoa = \"{hoa}\"\nprefixes = [\"{MNP}\"]\naction = \"allow\"\n\n[[home_agent.acl]]\nhoa = \"{BARE}\"\naction = \"allow\"\n\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = 1024\nmax_prefixes = 64\n",
        ha = seed::HA,
        hoa = seed::HOA
    )
}

#[test]
fn implicit_mode_registers_the_configured_prefixes_and_r_flag_changes_are_refused()
-> anyhow::Result<()> {
    if !require_root(
        "implicit_mode_registers_the_configured_prefixes_and_r_flag_changes_are_refused",
    ) {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &config())?;
    // The router's route to the mobile network: through the home agent.
    lab.router
        .ip(&["-6", "route", "add", MNP, "via", seed::HA])?;
    let router_mac = tests::scapy::mac(&lab.router, "foreign0")?;
    let bu = |hoa: &str, seq: &str, flags: &str| -> anyhow::Result<Value> {
        tests::scapy::run(
            &lab.mn,
            &[
                "bu",
                "--coa",
                seed::COA,
                "--ha",
                seed::HA,
                "--hoa",
                hoa,
                "--seq",
                seq,
                "--lifetime",
                "100",
                "--flags",
                flags,
                "--router-mac",
                &router_mac,
            ],
        )
    };

    // Implicit mode: BA status 0 with R, and the binding holds the ACL's prefix.
    let ba = bu(seed::HOA, "1", "AHR")?;
    assert_eq!(ba["status"], 0, "{ba}");
    assert!(ba["flags"].as_str().unwrap_or("").contains('R'), "{ba}");
    let b: Value = serde_json::from_str(&ha.cli(&["binding", "show", seed::HOA, "--json"])?)?;
    let b = if b.is_array() { b[0].clone() } else { b };
    assert_eq!(b["prefixes"], serde_json::json!([MNP]), "{b}");

    // A host behind the router is reached through the tunnel.
    let dir = tests::TempDir::new("nemo")?;
    let mut listener = tests::scapy::spawn(
        &lab.mn,
        &["tunnel", "--coa", seed::COA, "--duration", "3"],
        &dir.join("tunnel.log"),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    let _ = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "3", "-i", "0.3", "-W", "1", BEHIND])
        .output()?;
    let got = tests::scapy::first_json(
        &mut listener,
        "scapy's tunnel listener",
        Duration::from_secs(10),
    )?;
    let to_behind = got["packets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["inner_dst"] == BEHIND && p["outer_src"] == seed::HA)
        .count();
    assert!(to_behind >= 2, "{got}\n{}", ha.cli(&["stats"])?);

    // The same HoA without R: 139, and the binding stays a mobile router's.
    let ba = bu(seed::HOA, "2", "AH")?;
    assert_eq!(ba["status"], 139, "{ba}");
    let b: Value = serde_json::from_str(&ha.cli(&["binding", "show", seed::HOA, "--json"])?)?;
    let b = if b.is_array() { b[0].clone() } else { b };
    assert_eq!(b["prefixes"], serde_json::json!([MNP]), "{b}");

    // Implicit mode with nothing configured: 143, no binding.
    let ba = bu(BARE, "1", "AHR")?;
    assert_eq!(ba["status"], 143, "{ba}");
    assert!(ha.cli(&["binding", "show", BARE]).is_err());
    Ok(())
}
