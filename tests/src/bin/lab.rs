//! `cargo xtask run`: the seed talk's topology in network namespaces with the home agent's
//! data plane attached, showing its counters move with real traffic.

use anyhow::{Context as _, bail};
use tests::{
    step,
    topology::{Hagent, SeedLab, seed},
};

fn main() -> anyhow::Result<()> {
    step("building the seed's lab in network namespaces");
    let lab = SeedLab::new()?;
    println!(
        "  router joins home link {}, foreign link {} and correspondent link {}",
        seed::HOME_PREFIX,
        seed::FOREIGN_PREFIX,
        seed::CN_PREFIX
    );
    println!(
        "  HA {} on the home link    (namespace {})",
        seed::HA,
        lab.ha.name()
    );
    println!(
        "  MN {} on the foreign link (namespace {})",
        seed::COA,
        lab.mn.name()
    );
    println!(
        "  CN {} on its own link     (namespace {})",
        seed::CN,
        lab.cn.name()
    );

    let config = tests::topology::ha_config("native");
    let config = config.as_str();
    step("starting hagent on the HA's home-link interface");
    println!(
        "  configuration:\n    {}",
        config.trim_end().replace('\n', "\n    ")
    );
    let hagent = Hagent::start(&lab.ha, config)?;
    let before = hagent.counter("rx_ipv6")?;

    step("the CN and the MN ping the home agent; every packet crosses its XDP program");
    for (who, ns) in [("CN", &lab.cn), ("MN", &lab.mn)] {
        let out = ns
            .exec("ping", &["-6", "-c", "3", "-i", "0.2", "-W", "2", seed::HA])
            .with_context(|| format!("{who} cannot reach the HA"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        println!(
            "  {who}: {}",
            text.lines()
                .find(|l| l.contains("transmitted"))
                .unwrap_or("")
        );
    }

    step("hagent stats");
    print!("{}", hagent.cli(&["stats"])?);
    let after = hagent.counter("rx_ipv6")?;
    let status = hagent.stop()?;
    if !status.success() {
        bail!("hagent exited with {status}");
    }
    if after < before + 6 {
        bail!(
            "the XDP program counted {} IPv6 packets for 6 echo requests",
            after - before
        );
    }
    step(&format!(
        "ok: the XDP program saw {} IPv6 packets; hagent detached it and the lab is torn down",
        after - before
    ));
    Ok(())
}
