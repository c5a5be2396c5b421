//! State that survives (issue 11), end to end in namespaces: the home agent is SIGKILLed and
//! restarted — and handed off to a different build — while the correspondent pings the mobile
//! node through the tunnel: no echo request is lost, every binding comes back with its
//! sequence number, lifetime and id, and a replayed sequence number still gets 135. SIGHUP
//! reloads the ACL without touching a binding's traffic; a second instance never touches the
//! first's state; what a crash leaves, the next start (or `hagent cleanup`) removes; and on
//! plain veth pairs the default configuration tunnels both ways.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    Netns, TempDir, hagent_bin, require_root,
    roaming::{ping_counts, wait_mn_state},
    run,
    scapy::{self, mac},
    topology::{
        Hagent, Link, RoamingLab, SeedLab, roaming_mn_config, seed, seed_ha_mip6d_conf, test_bpffs,
    },
    wait_for,
};

/// A static binding next to the registered one, with a mobile network prefix (a route).
const STATIC_HOA: &str = "2001:db8:bee5::77";
const STATIC_COA: &str = "2001:db8:f00d::77";
const STATIC_MNP: &str = "2001:db8:7700::/48";

fn bindings(ha: &Hagent) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&ha.cli(&["bindings", "--json"])?)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// What must survive of a binding: everything but the counters and the remaining lifetime.
fn identity(b: &Value) -> Value {
    serde_json::json!({
        "hoa": b["hoa"], "coa": b["coa"], "ha_address": b["ha_address"],
        "sequence": b["sequence"], "origin": b["origin"], "id": b["id"],
        "prefixes": b["prefixes"], "interface": b["interface"],
    })
}

fn sh(ns: &Netns, args: &[&str]) -> String {
    String::from_utf8_lossy(
        &ns.exec(args[0], &args[1..])
            .map(|o| o.stdout)
            .unwrap_or_default(),
    )
    .to_string()
}

/// A different build of the same source (release instead of the tests' debug build): the
/// upgrade the hand-off must survive. Built once per test process.
fn release_bin() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(tests::workspace_root())
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "ha-userspace",
            "--bin",
            "hagent",
        ]))?;
    let bin = tests::workspace_root().join("target/release/hagent");
    anyhow::ensure!(
        std::fs::read(&bin)? != std::fs::read(hagent_bin()?)?,
        "the release build is the same binary as the test build"
    );
    Ok(bin)
}

#[test]
fn killed_restarted_and_upgraded_without_losing_a_packet_or_a_binding() -> anyhow::Result<()> {
    if !require_root("killed_restarted_and_upgraded_without_losing_a_packet_or_a_binding") {
        return Ok(());
    }
    let release = release_bin()?;
    let lab = RoamingLab::new()?;
    let mut ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;
    let mn = Hagent::start(&lab.mn, &roaming_mn_config("native"))?;
    wait_mn_state(&mn, "home", Duration::from_secs(10))?;
    lab.attach(Link::ForeignA)?;
    wait_mn_state(&mn, "registered", Duration::from_secs(15))?;
    ha.cli(&[
        "binding",
        "add",
        STATIC_HOA,
        STATIC_COA,
        "--lifetime",
        "3600",
        "--prefix",
        STATIC_MNP,
    ])?;
    let before = bindings(&ha)?;
    assert_eq!(before.len(), 2, "{before:?}");
    let registered = before
        .iter()
        .find(|b| b["hoa"] == seed::HOA)
        .cloned()
        .expect("the MN's binding");
    assert_eq!(registered["coa"], seed::COA);
    let route = || {
        sh(
            &lab.ha,
            &["ip", "-6", "route", "show", "proto", "0xa6", STATIC_MNP],
        )
    };
    assert!(
        route().contains("2001:db8:7700::/48"),
        "MNP route: {}",
        route()
    );

    // 12 s of pings (20/s) across three crashes and one upgrade.
    let dir = TempDir::new("restart")?;
    let mut ping = lab.cn.spawn(
        "ping",
        &["-6", "-c", "240", "-i", "0.05", "-W", "2", seed::HOA],
        &dir.join("ping.log"),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let mut restarts = Vec::new();
    for round in 0..4 {
        ping.check_running().map_err(|e| {
            anyhow::anyhow!("round {round}: the ping ended before the restart: {e:#}")
        })?;
        let t = std::time::Instant::now();
        let bin = if round == 2 {
            // A planned upgrade: hand off (SIGUSR2), start the other build.
            ha.process.signal(libc::SIGUSR2);
            let status = ha.process.wait_exit(Duration::from_secs(10))?;
            assert!(status.success(), "hand-off exit: {status}\n{}", ha.log());
            Some(release.as_path())
        } else {
            ha.process.kill()?;
            None
        };
        // Nobody home for a moment: the pinned data plane forwards alone.
        std::thread::sleep(Duration::from_millis(700));
        ha.restart(bin)?;
        restarts.push(t.elapsed());
        let after = bindings(&ha)?;
        assert_eq!(
            after.iter().map(identity).collect::<Vec<_>>(),
            before.iter().map(identity).collect::<Vec<_>>(),
            "round {round}: bindings after the restart\n{}",
            ha.log()
        );
        for (a, b) in after.iter().zip(&before) {
            let (la, lb) = (
                a["lifetime_remaining_s"].as_u64().unwrap(),
                b["lifetime_remaining_s"].as_u64().unwrap(),
            );
            assert!(
                la <= lb && la + 30 >= lb,
                "lifetime runs on across restarts: {lb} s before, {la} s after"
            );
        }
        assert!(ha.log().contains("binding cache restored"), "{}", ha.log());
        let attached = &ha.stats()?["attachments"];
        assert_eq!(attached[0]["adopted"], true, "{attached}");
        assert!(
            route().contains("2001:db8:7700::/48"),
            "MNP route: {}",
            route()
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    let status = ping.wait_exit(Duration::from_secs(30))?;
    let log = ping.log();
    let (sent, received) = ping_counts(&log).unwrap_or_else(|| panic!("ping said {log}"));
    eprintln!(
        "240 echo requests across 3 SIGKILLs and 1 upgrade: {sent} sent, {received} answered; restarts took {restarts:?}"
    );
    assert!(status.success() || received > 0, "{log}");
    assert_eq!(
        (sent, received),
        (240, 240),
        "no echo request lost\n{log}\nHA log:\n{}",
        ha.log()
    );

    // A replayed sequence number is refused as before the restarts (RFC 6275 §9.5.1). The BA
    // goes to the CoA, where the mobile node's own data plane takes it: its log shows it.
    let seq = registered["sequence"].as_u64().unwrap().to_string();
    let router_mac = mac(&lab.router, "fa")?;
    scapy::run(
        &lab.mn,
        &[
            "bu",
            "--iface",
            "fa0",
            "--router-mac",
            &router_mac,
            "--coa",
            seed::COA,
            "--ha",
            seed::HA,
            "--hoa",
            seed::HOA,
            "--seq",
            &seq,
            "--lifetime",
            "100",
            "--timeout",
            "0.5",
        ],
    )?;
    let refused = wait_for(
        "the HA to refuse the replay",
        Duration::from_secs(10),
        || {
            let r = ha.stats()?["home_agent"]["registrations"]["refused"]["135"].as_u64();
            Ok(r.filter(|&n| n >= 1))
        },
    )?;
    assert_eq!(refused, 1);
    let expected = format!("status=135 seq={seq}");
    wait_for("the MN to see the 135", Duration::from_secs(10), || {
        Ok(mn.log().contains(&expected).then_some(()))
    })?;

    // A binding removed stays removed across a crash.
    ha.cli(&["binding", "del", STATIC_HOA])?;
    ha.process.kill()?;
    ha.restart(None)?;
    let left = bindings(&ha)?;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["hoa"], seed::HOA);
    assert!(
        route().is_empty(),
        "the removed binding's route: {}",
        route()
    );

    // A clean stop removes everything: pins, routes.
    ha.cli(&[
        "binding", "add", STATIC_HOA, STATIC_COA, "--prefix", STATIC_MNP,
    ])?;
    assert!(!route().is_empty());
    let pins = ha.pin_dir()?;
    assert!(pins.exists());
    let status = std::mem::replace(&mut ha.process, tests::Background::none())
        .terminate(Duration::from_secs(10))?;
    assert!(status.success(), "{status}");
    assert!(!pins.exists(), "pins left after a clean stop");
    assert!(
        route().is_empty(),
        "route left after a clean stop: {}",
        route()
    );
    Ok(())
}

/// The seed lab's mip6d.conf with `DefaultBindPolicy` set to `policy`.
fn seed_conf_with_default(policy: &str) -> String {
    seed_ha_mip6d_conf()
        .lines()
        .map(|l| {
            if l.starts_with("DefaultBindPolicy") {
                format!("DefaultBindPolicy {policy};")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Scapy<'a> {
    ns: &'a Netns,
    router_mac: String,
}

impl Scapy<'_> {
    fn bu(&self, hoa: &str, seq: u16) -> anyhow::Result<Value> {
        let seq = seq.to_string();
        scapy::run(
            self.ns,
            &[
                "bu",
                "--router-mac",
                &self.router_mac,
                "--coa",
                seed::COA,
                "--ha",
                seed::HA,
                "--hoa",
                hoa,
                "--seq",
                &seq,
                "--lifetime",
                "100",
            ],
        )
    }
}

#[test]
fn sighup_reloads_the_acl_and_leaves_bindings_alone() -> anyhow::Result<()> {
    if !require_root("sighup_reloads_the_acl_and_leaves_bindings_alone") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let scapy = Scapy {
        ns: &lab.mn,
        router_mac: mac(&lab.router, "foreign0")?,
    };
    let ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_conf_with_default("allow"))?;
    let conf = ha.dir().join("mip6d.conf");
    let other = "2001:db8:bee5::b0b";
    assert_eq!(scapy.bu(other, 1)?["status"], 0);

    // The operator tightens the ACL: SIGHUP.
    std::fs::write(&conf, seed_conf_with_default("deny"))?;
    ha.process.signal(libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), || {
        Ok(ha
            .log()
            .contains("configuration reloaded applied")
            .then_some(()))
    })?;
    assert_eq!(
        scapy.bu("2001:db8:bee5::c0c", 1)?["status"],
        129,
        "a new BU is refused under the new ACL"
    );
    // The binding made under the old ACL stays, and its traffic still goes through the
    // tunnel (RFC 6275 §10.3.1: it is refused at its next Binding Update).
    assert!(bindings(&ha)?.iter().any(|b| b["hoa"] == other));
    let encapsulated = ha.counter("encap_tx")?;
    let _ = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "3", "-i", "0.2", "-W", "1", other])
        .output()?;
    assert!(
        ha.counter("encap_tx")? >= encapsulated + 3,
        "the existing binding's traffic is tunnelled after the reload"
    );
    assert_eq!(
        scapy.bu(other, 2)?["status"],
        129,
        "and its next BU is refused"
    );

    // An invalid file changes nothing and says where the problem is.
    std::fs::write(
        &conf,
        seed_conf_with_default("allow").replace("Interface", "Interfaec"),
    )?;
    let err = ha.cli(&["config", "reload"]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("mip6d.conf:4:1") && msg.contains("running configuration stays"),
        "{msg}"
    );
    assert_eq!(scapy.bu("2001:db8:bee5::d0d", 1)?["status"], 129);

    // What needs a restart is said, and not applied.
    let two_links = seed_conf_with_default("allow")
        .lines()
        .flat_map(|l| {
            let extra = l
                .starts_with("Interface")
                .then(|| "Interface \"lo\";".to_string());
            std::iter::once(l.to_string()).chain(extra)
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, two_links)?;
    let out = ha.cli(&["config", "reload"])?;
    assert!(
        out.contains("needs a restart (not applied): dataplane"),
        "{out}"
    );
    assert!(out.contains("applied: home_agent"), "{out}");
    assert_eq!(scapy.bu("2001:db8:bee5::e0e", 1)?["status"], 0);
    Ok(())
}

#[test]
fn instances_own_their_state_and_only_theirs() -> anyhow::Result<()> {
    if !require_root("instances_own_their_state_and_only_theirs") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    // A second home link for the second instance.
    lab.ha.ip(&[
        "link", "add", "home1", "type", "veth", "peer", "name", "home1p",
    ])?;
    lab.ha.ip(&["link", "set", "home1", "up"])?;
    lab.ha.ip(&["link", "set", "home1p", "up"])?;
    lab.ha.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:bee6::1/64",
        "dev",
        "home1",
        "nodad",
    ])?;
    let first = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;
    first.cli(&[
        "binding", "add", STATIC_HOA, STATIC_COA, "--prefix", STATIC_MNP,
    ])?;
    let routes = || sh(&lab.ha, &["ip", "-6", "route", "show", "proto", "0xa6"]);
    assert!(routes().contains("2001:db8:7700::/48"), "{}", routes());

    let second_conf = "role = \"home_agent\"\n\n[home_agent]\naddresses = [\"2001:db8:bee6::1\"]\n\n[dataplane]\ninterfaces = [\"home1\"]\nmax_bindings = 64\nmax_prefixes = 8\n";
    let second = Hagent::start_shared(&lab.ha, "second.toml", second_conf, &first.run_dir())?;
    second.cli(&[
        "binding",
        "add",
        "2001:db8:bee6::5",
        STATIC_COA,
        "--prefix",
        "2001:db8:7800::/48",
    ])?;
    assert!(routes().contains("2001:db8:7700::/48"), "{}", routes());
    assert!(routes().contains("2001:db8:7800::/48"), "{}", routes());
    drop(second);
    assert!(
        routes().contains("2001:db8:7700::/48") && !routes().contains("2001:db8:7800::/48"),
        "the second instance removed its own route and only that: {}",
        routes()
    );
    assert_eq!(bindings(&first)?.len(), 1);

    // The same interface under another name, or the same name: refused, nothing touched.
    let third_conf = second_conf
        .replace("home1", "eth0")
        .replace("bee6::1", "bee5::c001:babe");
    let err = Hagent::start_shared(&lab.ha, "third.toml", &third_conf, &first.run_dir())
        .err()
        .expect("a second instance on eth0 is refused");
    assert!(
        format!("{err:#}").contains("interface eth0 is served by another hagent instance"),
        "{err:#}"
    );
    let err = first.start_same_instance().err().expect("refused");
    assert!(
        format!("{err:#}").contains(&format!(
            "another hagent runs as instance \"{}\"",
            first.instance()
        )),
        "{err:#}"
    );
    assert!(routes().contains("2001:db8:7700::/48"), "{}", routes());
    assert_eq!(bindings(&first)?.len(), 1);
    Ok(())
}

#[test]
fn what_a_crash_leaves_the_next_start_or_cleanup_removes() -> anyhow::Result<()> {
    if !require_root("what_a_crash_leaves_the_next_start_or_cleanup_removes") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha_mac = mac(&lab.ha, "eth0")?;
    // What an older hagent left: a proxy ND entry and a permanent neighbour entry for home
    // addresses, and a route with our protocol number.
    lab.ha.ip(&[
        "-6",
        "neigh",
        "add",
        "proxy",
        "2001:db8:bee5::99",
        "dev",
        "eth0",
    ])?;
    lab.ha.ip(&[
        "-6",
        "neigh",
        "replace",
        "2001:db8:bee5::98",
        "lladdr",
        &ha_mac,
        "nud",
        "permanent",
        "dev",
        "eth0",
    ])?;
    lab.ha.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:9900::/48",
        "via",
        "2001:db8:bee5::99",
        "dev",
        "eth0",
        "proto",
        "0xa6",
    ])?;
    let mut ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;
    let neigh = || {
        sh(&lab.ha, &["ip", "-6", "neigh", "show", "proxy"])
            + &sh(&lab.ha, &["ip", "-6", "neigh", "show", "nud", "permanent"])
    };
    let routes = || sh(&lab.ha, &["ip", "-6", "route", "show", "proto", "0xa6"]);
    assert!(
        !neigh().contains("bee5::99") && !neigh().contains("bee5::98"),
        "{}",
        neigh()
    );
    assert!(!routes().contains("9900"), "{}", routes());
    assert!(ha.log().contains("proxy ND entries"), "{}", ha.log());

    // A crash with a binding and its route; then `hagent cleanup` removes it all.
    ha.cli(&[
        "binding", "add", STATIC_HOA, STATIC_COA, "--prefix", STATIC_MNP,
    ])?;
    ha.process.kill()?;
    let pins = ha.pin_dir()?;
    assert!(pins.exists(), "a crashed daemon's data plane stays pinned");
    let xdp = || sh(&lab.ha, &["ip", "link", "show", "eth0"]);
    assert!(xdp().contains("xdp"), "still attached: {}", xdp());
    let bin = hagent_bin()?;
    let bpffs = test_bpffs()?;
    let out = lab.ha.exec(
        bin.to_str().unwrap(),
        &[
            "cleanup",
            "--instance",
            ha.instance(),
            "--bpffs",
            bpffs.to_str().unwrap(),
            "--run-dir",
            ha.run_dir().to_str().unwrap(),
        ],
    )?;
    let report = String::from_utf8(out.stdout)?;
    assert!(report.contains("1 routes"), "{report}");
    assert!(!pins.exists(), "pins removed");
    assert!(!xdp().contains("xdp"), "detached: {}", xdp());
    assert!(routes().is_empty(), "{}", routes());
    let flags = sh(&lab.ha, &["ip", "link", "show", "eth0"]);
    assert!(!flags.contains("ALLMULTI"), "allmulti restored: {flags}");

    // A crash, then `--fresh`: nothing of the old state comes back.
    ha.restart(None)?;
    ha.cli(&[
        "binding", "add", STATIC_HOA, STATIC_COA, "--prefix", STATIC_MNP,
    ])?;
    ha.process.kill()?;
    let bpffs = bpffs.to_str().unwrap().to_string();
    let run_dir = ha.run_dir();
    let fresh = Hagent::start_args(
        &lab.ha,
        "mip6d.conf",
        &seed_ha_mip6d_conf(),
        &["--fresh"],
        Some((ha.instance(), &run_dir)),
    )?;
    assert!(bindings(&fresh)?.is_empty());
    assert!(routes().is_empty(), "{}", routes());
    let _ = bpffs;
    Ok(())
}

#[test]
fn plain_veth_pairs_tunnel_both_ways_by_default() -> anyhow::Result<()> {
    if !require_root("plain_veth_pairs_tunnel_both_ways_by_default") {
        return Ok(());
    }
    // No XDP on the router's veth ends, the seed's mip6d.conf as written (no XDP mode).
    let lab = SeedLab::plain()?;
    lab.mn_keeps_hoa_on_lo()?;
    let ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;
    let mn_conf = format!(
        "role = \"mobile_node\"\n\n[mobile_node]\nhome_address = \"{}\"\nhome_agent = \"{}\"\n\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = 16\nmax_prefixes = 16\n",
        seed::HOA,
        seed::HA
    );
    let mn = Hagent::start(&lab.mn, &mn_conf)?;
    ha.cli(&["binding", "add", seed::HOA, seed::COA])?;
    mn.cli(&["binding", "add", seed::HOA, seed::COA])?;
    for h in [&ha, &mn] {
        let a = &h.stats()?["attachments"][0];
        assert_eq!(a["mode"], "generic", "auto picks generic on veth: {a}");
    }
    let ping = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "20", "-i", "0.05", "-W", "2", seed::HOA])
        .output()?;
    let text = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(
        text.contains("20 received"),
        "CN -> HoA through the tunnel and back: {text}\nHA: {}\nMN: {}",
        ha.cli(&["stats"])?,
        mn.cli(&["stats"])?
    );
    Ok(())
}

#[test]
fn the_daemon_refuses_what_it_cannot_serve_or_must_not_touch() -> anyhow::Result<()> {
    if !require_root("the_daemon_refuses_what_it_cannot_serve_or_must_not_touch") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let dir = TempDir::new("refusals")?;
    let conf = dir.join("mip6d.conf");
    std::fs::write(&conf, seed_ha_mip6d_conf())?;
    let bin = hagent_bin()?;
    let bpffs = test_bpffs()?;
    let run_dir = dir.join("run");
    let attempt = |socket: &std::path::Path, bpffs: &std::path::Path| -> anyhow::Result<String> {
        let out = lab
            .ha
            .command(bin.to_str().unwrap())
            .args([
                "run",
                "-c",
                conf.to_str().unwrap(),
                "--instance",
                "refusals",
            ])
            .arg("--bpffs")
            .arg(bpffs)
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--socket")
            .arg(socket)
            .output()?;
        anyhow::ensure!(!out.status.success(), "hagent started: {out:?}");
        Ok(String::from_utf8_lossy(&out.stderr).to_string())
    };
    // A control socket path that is not a socket is never replaced.
    let file = dir.join("precious");
    std::fs::write(&file, "keep me")?;
    let err = attempt(&file, &bpffs)?;
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file)?, "keep me");
    // A home agent without IPv6 forwarding cannot serve: it says which sysctl.
    lab.ha.sysctl("net.ipv6.conf.eth0.forwarding", "0")?;
    let err = attempt(&dir.join("s.sock"), &bpffs)?;
    assert!(err.contains("net.ipv6.conf.eth0.forwarding=1"), "{err}");
    assert!(
        !sh(&lab.ha, &["ip", "link", "show", "eth0"]).contains("xdp"),
        "nothing attached"
    );
    // A bpffs that is not one: said, with the way out.
    lab.ha.sysctl("net.ipv6.conf.eth0.forwarding", "1")?;
    let err = attempt(&dir.join("s.sock"), std::path::Path::new("/tmp"))?;
    assert!(err.contains("is not a bpffs"), "{err}");
    Ok(())
}

#[test]
fn a_pinned_data_plane_of_another_layout_or_size_is_refused_never_misread() -> anyhow::Result<()> {
    if !require_root("a_pinned_data_plane_of_another_layout_or_size_is_refused_never_misread") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let conf = |max: u32| {
        format!(
            "role = \"home_agent\"\n[home_agent]\naddresses = [\"{}\"]\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = {max}\n",
            seed::HA
        )
    };
    let mut ha = Hagent::start(&lab.ha, &conf(1024))?;
    ha.cli(&["binding", "add", STATIC_HOA, STATIC_COA])?;
    ha.process.kill()?;
    let pins = ha.pin_dir()?;
    let (instance, run_dir) = (ha.instance().to_string(), ha.run_dir());
    let start = |config: &str| {
        Hagent::start_args(
            &lab.ha,
            "hagent.toml",
            config,
            &[],
            Some((&instance, &run_dir)),
        )
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default()
    };

    // Another size than the pinned maps were made with: said, with the way out.
    let err = start(&conf(2048));
    assert!(
        err.contains("HA_BINDINGS does not fit")
            && err.contains("1024 entries, the configuration asks for 2048")
            && err.contains("--fresh"),
        "{err}"
    );
    // Another layout version (as a build with other map structures would have written).
    let layout = aya::maps::MapData::from_pin(pins.join(ha_common::maps::LAYOUT))?;
    let mut m = aya::maps::Array::<_, u32>::try_from(aya::maps::Map::Array(layout))?;
    m.set(0, ha_common::abi::LAYOUT_VERSION + 1, 0)?;
    let err = start(&conf(1024));
    assert!(
        err.contains(&format!(
            "map layout {}, this hagent uses layout {}",
            ha_common::abi::LAYOUT_VERSION + 1,
            ha_common::abi::LAYOUT_VERSION
        )),
        "{err}"
    );
    // Refused, the old data plane was left as it was: still pinned, still attached.
    assert!(pins.join(ha_common::maps::BINDINGS).exists());
    assert!(sh(&lab.ha, &["ip", "link", "show", "eth0"]).contains("xdp"));
    // --fresh starts over.
    let fresh = Hagent::start_args(
        &lab.ha,
        "hagent.toml",
        &conf(1024),
        &["--fresh"],
        Some((&instance, &run_dir)),
    )?;
    assert!(bindings(&fresh)?.is_empty());
    drop(m);
    Ok(())
}
