//! IPsec on this host (its kernel has xfrm but no ESP): the policies hagent derives from the
//! seed's IPsecPolicySet are installed over xfrm netlink, read back with `ip xfrm policy` and
//! compared field by field, then removed; and a daemon asked for IPsec on a kernel without ESP
//! refuses to start, says why and what to do, and leaves no policy behind.

use std::path::Path;

use hagent::{config::umip, ipsec};
use tests::{
    Netns, TempDir, hagent_bin, require_root,
    topology::{addr, veth},
};

fn kernel_has_esp(ns: &Netns) -> bool {
    ns.command("ip")
        .args([
            "xfrm",
            "state",
            "add",
            "src",
            "2001:db8::1",
            "dst",
            "2001:db8::2",
            "proto",
            "esp",
            "spi",
            "0x1000",
            "mode",
            "transport",
            "aead",
            "rfc4106(gcm(aes))",
            "0x0102030405060708090a0b0c0d0e0f1011121314",
            "128",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `ip xfrm policy` output, one string per policy block.
fn policy_blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line.trim());
            b.push(' ');
        }
    }
    blocks
}

/// In `ns`: installs `policies` over netlink, reads them back with `ip xfrm policy`, removes
/// them all and reads again — (what was installed, what was left).
fn install_and_remove(
    ns: &Netns,
    policies: Vec<ipsec::Policy>,
) -> anyhow::Result<(String, String)> {
    ns.run_in(move || -> anyhow::Result<(String, String)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut x = ipsec::Ipsec::new()?;
            for p in &policies {
                x.install(p).await?;
            }
            let installed = ip_xfrm_policy()?;
            x.remove_all().await?;
            Ok((installed, ip_xfrm_policy()?))
        })
    })?
}

fn ip_xfrm_policy() -> anyhow::Result<String> {
    let out = std::process::Command::new("ip")
        .args(["xfrm", "policy"])
        .output()?;
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn policies_are_installed_over_netlink_and_match_ip_xfrm() -> anyhow::Result<()> {
    if !require_root("policies_are_installed_over_netlink_and_match_ip_xfrm") {
        return Ok(());
    }
    let ns = Netns::new("xfrm")?;
    let conf = tests::topology::seed_ha_mip6d_conf()
        .replace("UseMnHaIPsec\u{a0}disabled", "UseMnHaIPsec\u{a0}enabled");
    let u = umip::parse_str(&conf, Path::new("mip6d.conf")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut want = ipsec::nd_bypass_policies();
    want.extend(ipsec::home_agent_policies(&u.ipsec_policy_sets[0])?);
    let to_install = want.clone();
    // In the namespace: install over netlink, read back with ip, remove, read again.
    let (installed, after) = install_and_remove(&ns, to_install)?;
    assert!(
        after.is_empty(),
        "hagent removed exactly what it installed: {after}"
    );
    let blocks = policy_blocks(&installed);
    assert_eq!(blocks.len(), want.len(), "{blocks:#?}");
    for p in &want {
        let dir = if p.dir == 0 { "in" } else { "out" };
        let sel = format!("src {}/{} dst {}/{}", p.src, p.src_len, p.dst, p.dst_len);
        let found = blocks.iter().any(|b| {
            b.starts_with(&sel)
                && b.contains(&format!("dir {dir} priority {} ", p.priority))
                && match p.proto {
                    135 => b.contains("proto mobility-header"),
                    58 => b.contains("proto ipv6-icmp"),
                    _ => true,
                }
                && p.mh_or_icmp_type
                    .is_none_or(|t| b.contains(&format!("type {t} ")))
                && match p.esp_reqid {
                    Some(r) => b.contains(&format!("proto esp reqid {r} mode transport")),
                    None => !b.contains("tmpl"),
                }
        });
        assert!(found, "policy {p:?} not found in:\n{blocks:#?}");
    }
    Ok(())
}

#[test]
fn no_esp_kernel_refuses_ipsec_clearly_and_cleanly() -> anyhow::Result<()> {
    if !require_root("no_esp_kernel_refuses_ipsec_clearly_and_cleanly") {
        return Ok(());
    }
    let ha = Netns::new("noesp")?;
    if kernel_has_esp(&ha) {
        eprintln!(
            "\n!!! SKIPPED no_esp_kernel_refuses_ipsec_clearly_and_cleanly: this kernel has ESP (the VM tier covers it)\n"
        );
        return Ok(());
    }
    let peer = Netns::new("noesp-peer")?;
    veth(&ha, "eth0", &peer, "eth0")?;
    addr(&ha, "eth0", "2001:db8:bee5::c001:babe/64")?;
    let dir = TempDir::new("noesp")?;
    let conf = tests::topology::seed_ha_mip6d_conf()
        .replace("UseMnHaIPsec\u{a0}disabled", "UseMnHaIPsec\u{a0}enabled");
    let path = dir.join("mip6d.conf");
    std::fs::write(&path, conf)?;
    ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    let out = ha
        .command(hagent_bin()?.to_str().unwrap())
        .args([
            "run",
            "-c",
            path.to_str().unwrap(),
            "--instance",
            "noesp",
            "--socket",
        ])
        .arg(dir.join("s.sock"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--bpffs")
        .arg(tests::topology::test_bpffs()?)
        .output()?;
    assert!(!out.status.success(), "hagent started without ESP");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CONFIG_INET6_ESP"),
        "names the kernel feature: {err}"
    );
    assert!(
        err.contains("UseMnHaIPsec disabled"),
        "says how to run without IPsec: {err}"
    );
    assert!(err.contains("boot a kernel"), "says how to get ESP: {err}");
    let left = ha.exec("ip", &["xfrm", "policy"])?;
    assert!(
        left.stdout.is_empty(),
        "policies left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let xdp = ha.exec("ip", &["link", "show", "eth0"])?;
    assert!(
        !String::from_utf8_lossy(&xdp.stdout).contains("xdp"),
        "XDP left attached"
    );
    Ok(())
}

/// Tunnel-mode policies per binding (`TunnelPayload`): installed with their at-home templates
/// (HA ↔ HoA), moved to the CoA and on to a second CoA with XFRM_MSG_MIGRATE, moved back and
/// removed — each step read back with `ip xfrm policy`. (The SAs that migrate along need ESP:
/// the VM tier's `ipsec-registration` test covers them.)
#[test]
fn tunnel_policies_follow_the_care_of_address_by_migration() -> anyhow::Result<()> {
    if !require_root("tunnel_policies_follow_the_care_of_address_by_migration") {
        return Ok(());
    }
    use tests::topology::seed;
    let ns = Netns::new("xfrm-mig")?;
    let conf = tests::topology::seed_ha_mip6d_conf();
    let u = umip::parse_str(&conf, Path::new("mip6d.conf")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hoa: std::net::Ipv6Addr = seed::HOA.parse()?;
    let coa_a: std::net::Ipv6Addr = seed::COA.parse()?;
    let coa_b: std::net::Ipv6Addr = "2001:db8:f00e::dead:face".parse()?;
    let policies =
        ipsec::tunnel_policies(&u.ipsec_policy_sets[0], hoa, &[], ipsec::Side::HomeAgent)?;
    // The seed's set has TunnelPayload: in + fwd from the HoA, out to it.
    assert_eq!(policies.len(), 3, "{policies:#?}");
    let snapshots = ns.run_in(move || -> anyhow::Result<Vec<String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut x = ipsec::Ipsec::new()?;
            let mut p = policies.clone();
            for q in &p {
                x.install(q).await?;
            }
            let mut shots = vec![ip_xfrm_policy()?];
            x.migrate(&mut p, hoa, coa_a).await?;
            shots.push(ip_xfrm_policy()?);
            x.migrate(&mut p, coa_a, coa_b).await?;
            shots.push(ip_xfrm_policy()?);
            x.migrate(&mut p, coa_b, hoa).await?;
            x.remove(&p).await?;
            shots.push(ip_xfrm_policy()?);
            x.remove_all().await?;
            Ok(shots)
        })
    })??;
    let ha = seed::HA;
    for (shot, at) in snapshots[..3]
        .iter()
        .zip([seed::HOA, seed::COA, "2001:db8:f00e::dead:face"])
    {
        let blocks = policy_blocks(shot);
        assert_eq!(blocks.len(), 3, "{blocks:#?}");
        let has = |sel: &str, dir: &str, tmpl: &str| {
            blocks.iter().any(|b| {
                b.starts_with(sel)
                    && b.contains(&format!("dir {dir} priority 13 "))
                    && b.contains(&format!("tmpl src {tmpl} proto esp reqid 11 mode tunnel"))
            })
        };
        let to_hoa = format!("src ::/0 dst {}/128", seed::HOA);
        let from_hoa = format!("src {}/128 dst ::/0", seed::HOA);
        assert!(
            has(&to_hoa, "out", &format!("{ha} dst {at}")),
            "out → {at}: {blocks:#?}"
        );
        assert!(
            has(&from_hoa, "in", &format!("{at} dst {ha}")),
            "in ← {at}: {blocks:#?}"
        );
        assert!(
            has(&from_hoa, "fwd", &format!("{at} dst {ha}")),
            "fwd ← {at}: {blocks:#?}"
        );
    }
    assert!(
        snapshots[3].trim().is_empty(),
        "all removed: {}",
        snapshots[3]
    );
    Ok(())
}

/// mip6d.conf's `deny`/`block` policies are installed as block policies (no ESP needed) and
/// listed by `ip xfrm policy` with `action block`, without a template; `allow` stays allow.
#[test]
fn deny_and_block_policies_are_installed_as_block() -> anyhow::Result<()> {
    if !require_root("deny_and_block_policies_are_installed_as_block") {
        return Ok(());
    }
    let ns = Netns::new("xfrm-block")?;
    let conf = "NodeConfig HA;\nInterface \"eth0\";\nUseMnHaIPsec enabled;\nIPsecPolicySet {\n  HomeAgentAddress 2001:db8:bee5::c001:babe;\n  HomeAddress 2001:db8:bee5::dead:face/64;\n  IPsecPolicy Mh UseESP 10 deny;\n  IPsecPolicy ICMP UseESP 11 block;\n  IPsecPolicy any UseESP 12 allow;\n}\n";
    let u = umip::parse_str(conf, Path::new("mip6d.conf")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let want = ipsec::home_agent_policies(&u.ipsec_policy_sets[0])?;
    assert_eq!(want.iter().filter(|p| p.block).count(), 4, "{want:#?}");
    let to_install = want.clone();
    let (installed, after) = install_and_remove(&ns, to_install)?;
    assert!(after.is_empty(), "left behind: {after}");
    let blocks = policy_blocks(&installed);
    assert_eq!(blocks.len(), want.len(), "{blocks:#?}");
    for p in &want {
        let dir = if p.dir == 0 { "in" } else { "out" };
        let sel = format!("src {}/{} dst {}/{}", p.src, p.src_len, p.dst, p.dst_len);
        let proto = match p.proto {
            135 => "proto mobility-header",
            58 => "proto ipv6-icmp",
            _ => "",
        };
        let found = blocks.iter().any(|b| {
            b.starts_with(&sel)
                && b.contains(&format!("dir {dir} "))
                && b.contains(proto)
                && (p.proto != 0
                    || !b.contains("proto mobility-header") && !b.contains("proto ipv6-icmp"))
                && if p.block {
                    b.contains("action block") && !b.contains("tmpl")
                } else {
                    !b.contains("action block") && b.contains("proto esp reqid 12")
                }
        });
        assert!(found, "policy {p:?} not found in:\n{blocks:#?}");
    }
    Ok(())
}
