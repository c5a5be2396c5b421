//! The foundation's end-to-end proof: `hagent` loads the embedded XDP program, attaches it to a
//! veth in a namespace, the program's counter moves with real traffic, `bpftool` sees it, and
//! nothing stays attached after `hagent` stops (SIGTERM; a crash leaves the pinned data plane
//! forwarding — `restart.rs`).

use std::process::Command;

use tests::{
    Netns, hagent_bin, require_root,
    topology::{Hagent, addr, veth},
};

/// Program id attached as XDP to `ifname` in `ns`, per `bpftool net show` (None if nothing).
fn attached_xdp_prog(ns: &Netns, ifname: &str) -> anyhow::Result<Option<u64>> {
    let out = ns.exec("bpftool", &["-j", "net", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v[0]["xdp"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|x| x["id"].as_u64()))
}

fn prog_exists(id: u64) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ping_counts_ipv6(mode: &str) -> anyhow::Result<()> {
    let ha = Netns::new("ha")?;
    let peer = Netns::new("peer")?;
    veth(&ha, "home0", &peer, "peer0")?;
    ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    addr(&ha, "home0", "2001:db8:bee5::c001:babe/64")?;
    addr(&peer, "peer0", "2001:db8:bee5::1/64")?;

    let hagent = Hagent::start(
        &ha,
        &format!(
            "[home_agent]\naddresses = [\"2001:db8:bee5::c001:babe\"]\n[dataplane]\ninterfaces = [\"home0\"]\nxdp_mode = \"{mode}\"\nmax_bindings = 1024\n"
        ),
    )?;

    // bpftool sees our program attached in the requested mode.
    let show = String::from_utf8(
        ha.exec("bpftool", &["-j", "net", "show", "dev", "home0"])?
            .stdout,
    )?;
    let v: serde_json::Value = serde_json::from_str(&show)?;
    let want_mode = if mode == "native" {
        "driver"
    } else {
        "generic"
    };
    assert_eq!(
        v[0]["xdp"][0]["mode"], want_mode,
        "bpftool net show: {show}"
    );
    let prog_id = attached_xdp_prog(&ha, "home0")?.expect("attached");
    let prog = Command::new("bpftool")
        .args(["prog", "show", "id", &prog_id.to_string()])
        .output()?;
    assert!(String::from_utf8_lossy(&prog.stdout).contains("ha_xdp_ingress"));

    let before = hagent.counter("rx_ipv6")?;
    peer.exec(
        "ping",
        &[
            "-6",
            "-c",
            "5",
            "-i",
            "0.1",
            "-W",
            "2",
            "2001:db8:bee5::c001:babe",
        ],
    )?;
    let after = hagent.counter("rx_ipv6")?;
    assert!(
        after >= before + 5,
        "5 echo requests crossed the XDP program but rx_ipv6 went {before} -> {after}\n{}",
        hagent.log()
    );
    assert!(hagent.counter("rx_frames")? >= after);

    let status = hagent.stop()?;
    assert!(status.success(), "hagent exited with {status}");
    assert_eq!(
        attached_xdp_prog(&ha, "home0")?,
        None,
        "XDP still attached after exit"
    );
    assert!(
        !prog_exists(prog_id),
        "program {prog_id} still loaded after exit"
    );
    Ok(())
}

#[test]
fn native_xdp_counter_moves_with_ping() -> anyhow::Result<()> {
    if !require_root("native_xdp_counter_moves_with_ping") {
        return Ok(());
    }
    ping_counts_ipv6("native")
}

#[test]
fn generic_xdp_counter_moves_with_ping() -> anyhow::Result<()> {
    if !require_root("generic_xdp_counter_moves_with_ping") {
        return Ok(());
    }
    ping_counts_ipv6("generic")
}

#[test]
fn missing_interface_is_refused_clearly() -> anyhow::Result<()> {
    if !require_root("missing_interface_is_refused_clearly") {
        return Ok(());
    }
    let ns = Netns::new("noif")?;
    let dir = tests::TempDir::new("noif")?;
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[home_agent]\naddresses = [\"2001:db8::1\"]\n[dataplane]\ninterfaces = [\"nosuch0\"]\n",
    )?;
    let out = ns
        .command(hagent_bin()?.to_str().unwrap())
        .args([
            "run",
            "-c",
            cfg.to_str().unwrap(),
            "--instance",
            "nosuch",
            "--socket",
        ])
        .arg(dir.join("s.sock"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"nosuch0\" does not exist"), "stderr: {err}");
    assert!(!dir.join("s.sock").exists());
    Ok(())
}

#[test]
fn client_without_daemon_says_so() -> anyhow::Result<()> {
    let dir = tests::TempDir::new("nodaemon")?;
    let out = Command::new(hagent_bin()?)
        .args(["stats", "--socket"])
        .arg(dir.join("none.sock"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no hagent daemon answers"), "stderr: {err}");
    Ok(())
}
