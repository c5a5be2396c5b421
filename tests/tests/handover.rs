//! The seed's story with our own mobile node: home → foreign link A → foreign link B → home,
//! while the CN pings the HoA and a TCP conversation between them runs across every move. The
//! binding follows each move; the loss per handover is bounded (a behaviour bound: the
//! registration round trip plus the HA's DAD on the first move, not a timing benchmark).

use std::time::Duration;

use tests::{
    TempDir, require_root,
    roaming::{Conversation, handover, now, ping_replies, wait_mn_state},
    topology::{Hagent, Link, RoamingLab, roaming, roaming_mn_config, seed, seed_ha_mip6d_conf},
    wait_for,
};

/// At 20 echo requests a second: 3 s — the first move also waits out the HA's 1 s DAD.
const MAX_LOST_PER_HANDOVER: u64 = 60;

fn roam(mode: &str) -> anyhow::Result<()> {
    let lab = RoamingLab::new()?;
    let ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;
    let mn = Hagent::start(&lab.mn, &roaming_mn_config(mode))?;
    wait_mn_state(&mn, "home", Duration::from_secs(10))?;

    let dir = TempDir::new("roam")?;
    let Conversation {
        mut ping,
        server,
        mut client,
        stop,
    } = Conversation::start(&lab.cn, &lab.mn, seed::HOA, dir.path())?;
    std::thread::sleep(Duration::from_secs(2));

    let mut moves = vec![];
    for (link, coa) in [
        (Link::ForeignA, Some(seed::COA)),
        (Link::ForeignB, Some(roaming::COA_B)),
        (Link::Home, None),
    ] {
        let t = now();
        lab.attach(link)?;
        match coa {
            Some(coa) => {
                wait_mn_state(&mn, "registered", Duration::from_secs(15)).map_err(|e| {
                    let sh = |args: &[&str]| {
                        String::from_utf8_lossy(
                            &lab.mn
                                .exec(args[0], &args[1..])
                                .map(|o| o.stdout)
                                .unwrap_or_default(),
                        )
                        .to_string()
                    };
                    anyhow::anyhow!(
                        "{e:#}\nMN log:\n{}\nHA log:\n{}\nMN stats:\n{}\n{}\n{}",
                        mn.log(),
                        ha.log(),
                        mn.cli(&["stats"]).unwrap_or_default(),
                        sh(&["cat", "/proc/net/snmp6"]),
                        sh(&["ip", "-6", "route", "show", "table", "local"]),
                    )
                })?;
                let b = wait_for(
                    "the HA's binding to follow",
                    Duration::from_secs(10),
                    || {
                        let v: serde_json::Value =
                            serde_json::from_str(&ha.cli(&["bindings", "--json"])?)?;
                        Ok((v[0]["coa"] == coa).then_some(v[0].clone()))
                    },
                )?;
                assert_eq!(b["hoa"], seed::HOA);
            }
            None => {
                if let Err(e) = wait_mn_state(&mn, "home", Duration::from_secs(15)) {
                    tests::pause_if_asked(&[&lab.router, &lab.ha, &lab.mn, &lab.cn]);
                    anyhow::bail!("{e:#}\nMN log:\n{}\nHA log:\n{}", mn.log(), ha.log());
                }
                let dropped = wait_for(
                    "the HA to drop the binding",
                    Duration::from_secs(10),
                    || {
                        let v: serde_json::Value =
                            serde_json::from_str(&ha.cli(&["bindings", "--json"])?)?;
                        Ok(v.as_array().is_some_and(|a| a.is_empty()).then_some(()))
                    },
                );
                if let Err(e) = dropped {
                    anyhow::bail!("{e:#}\nMN log:\n{}\nHA log:\n{}", mn.log(), ha.log());
                }
            }
        }
        std::thread::sleep(Duration::from_secs(3));
        moves.push((link, t));
    }

    std::fs::write(&stop, b"")?;
    let client_log = wait_for("the TCP client to finish", Duration::from_secs(20), || {
        let log = client.log();
        Ok((log.contains("ok ") || log.contains("error")).then_some(log))
    })?;
    ping.terminate(Duration::from_secs(5))?;
    let _ = client.check_running();
    drop(server);

    let replies = ping_replies(&ping.log());
    for (link, t) in &moves {
        let h = handover(&replies, *t)
            .unwrap_or_else(|| panic!("no ping reply after moving to the {}", link.name()));
        eprintln!(
            "{mode}: to the {}: {} echo requests lost, {:.2} s",
            link.name(),
            h.lost,
            h.seconds
        );
        assert!(
            h.lost <= MAX_LOST_PER_HANDOVER,
            "moving to the {} lost {} echo requests",
            link.name(),
            h.lost
        );
    }
    assert!(
        client_log.contains("ok "),
        "the TCP conversation broke: {client_log}"
    );
    let echoed: u64 = client_log
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("ok "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(echoed > 100, "only {echoed} lines echoed");
    assert!(ha.stop()?.success());
    assert!(mn.stop()?.success());
    Ok(())
}

#[test]
fn home_foreign_a_foreign_b_home_native() -> anyhow::Result<()> {
    if !require_root("home_foreign_a_foreign_b_home_native") {
        return Ok(());
    }
    roam("native")
}

#[test]
fn home_foreign_a_foreign_b_home_generic() -> anyhow::Result<()> {
    if !require_root("home_foreign_a_foreign_b_home_generic") {
        return Ok(());
    }
    roam("generic")
}
