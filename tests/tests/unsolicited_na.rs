//! The home agent's unsolicited Neighbor Advertisements for a new binding (RFC 6275 §10.4.1,
//! RFC 4861 §7.2.6), as the home link sees them (tcpdump on the router, decoded by tshark):
//! to all nodes, Target = HoA, the HA's MAC as target link-layer address, R=0 S=0 O=1,
//! MAX_NEIGHBOR_ADVERTISEMENT (3) transmissions — and the repeats stop when the binding goes.

use std::{process::Command, time::Duration};

use tests::{
    require_root,
    topology::{Hagent, SeedLab, ha_config, seed},
    wait_for,
};

/// (target, R, S, O, IPv6 destination, target link-layer address) of each NA in `pcap`.
fn advertisements(pcap: &std::path::Path) -> anyhow::Result<Vec<Vec<String>>> {
    tests::tshark_fields(
        pcap,
        Some("icmpv6.type == 136"),
        &[
            "icmpv6.nd.na.target_address",
            "icmpv6.nd.na.flag.r",
            "icmpv6.nd.na.flag.s",
            "icmpv6.nd.na.flag.o",
            "ipv6.dst",
            "icmpv6.opt.linkaddr",
        ],
    )
}

#[test]
fn a_new_binding_is_advertised_three_times_and_the_repeats_stop_with_it() -> anyhow::Result<()> {
    if !require_root("a_new_binding_is_advertised_three_times_and_the_repeats_stop_with_it") {
        return Ok(());
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        anyhow::bail!("tshark not installed (cargo xtask setup installs it)");
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    let ha_mac = tests::scapy::mac(&lab.ha, "eth0")?;
    let dir = tests::TempDir::new("una")?;
    let pcap = dir.join("home.pcap");
    let mut tcpdump = lab
        .router
        .tcpdump("home0", "icmp6 and ip6[40] == 136", &pcap)?;

    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    // A second binding removed at once: its first advertisement goes, its repeats do not.
    let gone = "2001:db8:bee5::77";
    ha.cli(&["binding", "add", gone, seed::COA, "--lifetime", "600"])?;
    ha.cli(&["binding", "del", gone])?;
    let of = |target: &str| -> anyhow::Result<Vec<Vec<String>>> {
        Ok(advertisements(&pcap)?
            .into_iter()
            .filter(|f| f[0] == target)
            .collect())
    };
    wait_for(
        "three advertisements of the HoA",
        Duration::from_secs(15),
        || Ok((of(seed::HOA)?.len() >= 3).then_some(())),
    )?;
    // Well past the last repeat: no fourth one, and none more of the removed binding.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = tcpdump.terminate(Duration::from_secs(5));
    let hoa = of(seed::HOA)?;
    assert_eq!(hoa.len(), 3, "{hoa:?}");
    for f in &hoa {
        assert_eq!(
            f[1..],
            [
                "0".to_string(),
                "0".to_string(),
                "1".to_string(),
                "ff02::1".to_string(),
                ha_mac.clone()
            ],
            "{f:?}"
        );
    }
    assert_eq!(of(gone)?.len(), 1, "{:?}", of(gone)?);
    Ok(())
}
