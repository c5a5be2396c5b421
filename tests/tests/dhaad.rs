//! Dynamic Home Agent Address Discovery answered by our home agent (RFC 6275 §10.5), scapy as
//! the mobile node on the foreign link and as a second home agent on the home link: a DHAAD
//! Request to the home prefix's home-agents anycast address (RFC 2526) gets a reply from the
//! home agent's address listing it; after the second home agent advertises itself (RA with the
//! H flag, an R-flag prefix and a Home Agent Information option with a higher preference) the
//! reply lists that one first; its lifetime 0 withdraws it.

use tests::{
    require_root,
    topology::{Hagent, SeedLab, ha_config, seed},
};

const ANYCAST: &str = "2001:db8:bee5::fdff:ffff:ffff:fffe";

#[test]
fn dhaad_requests_to_the_home_agents_anycast_address_are_answered() -> anyhow::Result<()> {
    if !require_root("dhaad_requests_to_the_home_agents_anycast_address_are_answered") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    let ask = || {
        tests::scapy::run(
            &lab.mn,
            &[
                "dhaad",
                "--src",
                seed::COA,
                "--anycast",
                ANYCAST,
                "--timeout",
                "5",
            ],
        )
    };
    let r = ask()?;
    assert_eq!(r["src"], seed::HA, "{r}\n{}", ha.cli(&["stats", "--json"])?);
    assert_eq!(r["dst"], seed::COA, "{r}");
    assert_eq!(r["addresses"], serde_json::json!([seed::HA]), "{r}");

    // The router announces itself as a home agent with preference 10.
    let advertise = |lifetime: &str| {
        tests::scapy::run(
            &lab.router,
            &[
                "ra-ha",
                "--iface",
                "home0",
                "--address",
                seed::ROUTER_HOME,
                "--pref",
                "10",
                "--lifetime",
                lifetime,
            ],
        )
    };
    advertise("600")?;
    let r = ask()?;
    assert_eq!(
        r["addresses"],
        serde_json::json!([seed::ROUTER_HOME, seed::HA]),
        "{r}\n{}",
        ha.cli(&["stats", "--json"])?
    );
    // An RA whose Home Agent Information lifetime is absent and router lifetime 0 would
    // withdraw it; here the option's lifetime 0 is invalid (RFC 6275 §7.4) and ignored, so the
    // router lifetime (1800 s) counts: still listed.
    advertise("0")?;
    let r = ask()?;
    assert_eq!(r["addresses"][0], seed::ROUTER_HOME, "{r}");
    let s: serde_json::Value = serde_json::from_str(&ha.cli(&["stats", "--json"])?)?;
    let d = &s["home_agent"]["dhaad"];
    assert_eq!(d["requests"], 3, "{d}");
    assert_eq!(d["replies"], 3, "{d}");
    assert!(
        d["advertisements_learned"].as_u64().unwrap_or(0) >= 2,
        "{d}"
    );
    Ok(())
}
