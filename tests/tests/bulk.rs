//! The bulk path for static bindings: `hagent binding load FILE` sends every line over one
//! connection with requests pipelined, checks the whole file before sending anything, and
//! reports refusals by line — each binding passes the same checks as `hagent binding add`.

use std::fmt::Write as _;

use tests::{
    Netns, TempDir, hagent_bin, require_root,
    topology::{Hagent, addr, veth},
};

fn config() -> String {
    "role = \"home_agent\"\n[home_agent]\naddresses = [\"2001:db8:bee5::c001:babe\"]\ndad = false\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = 8192\nmax_prefixes = 64\n".to_string()
}

#[test]
fn binding_load_adds_thousands_pipelined_and_reports_refusals_by_line() -> anyhow::Result<()> {
    if !require_root("binding_load_adds_thousands_pipelined_and_reports_refusals_by_line") {
        return Ok(());
    }
    let ha = Netns::new("bulk-ha")?;
    let peer = Netns::new("bulk-peer")?;
    veth(&ha, "eth0", &peer, "eth0")?;
    ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    addr(&ha, "eth0", "2001:db8:bee5::c001:babe/64")?;
    let d = Hagent::start(&ha, &config())?;
    let dir = TempDir::new("bulk")?;

    // A malformed line: nothing is sent.
    let bad = dir.join("bad.txt");
    std::fs::write(
        &bad,
        "2001:db8:bee5::1:1 2001:db8:f00d::1\n2001:db8:bee5::1:2 2001:db8:f00d::1 lifetime soon\n",
    )?;
    let bin = hagent_bin()?;
    let load = |file: &std::path::Path| {
        std::process::Command::new(&bin)
            .args(["binding", "load"])
            .arg(file)
            .arg("--socket")
            .arg(&d.socket)
            .output()
    };
    let out = load(&bad)?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.txt:2: invalid lifetime \"soon\""),
        "{err}"
    );
    assert_eq!(d.cli(&["bindings", "--count"])?.trim(), "0");

    // 5,000 bindings, one the trust boundary refuses (the HA's own address), one prefix.
    let mut text = String::from("# HoA CoA [lifetime S] [prefix P/LEN]\n");
    for i in 0..5000u32 {
        writeln!(
            text,
            "2001:db8:bee5::1:{i:x} 2001:db8:f00d::{:x} lifetime 600",
            i + 1
        )?;
    }
    writeln!(text, "2001:db8:bee5::c001:babe 2001:db8:f00d::99")?;
    writeln!(
        text,
        "2001:db8:bee5::2:1 2001:db8:f00d::98 prefix 2001:db8:100::/48 # a mobile router"
    )?;
    let good = dir.join("bindings.txt");
    std::fs::write(&good, &text)?;
    let out = load(&good)?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}");
    assert!(!out.status.success(), "a refusal makes the load fail");
    assert!(
        stdout.contains("5001 bindings added, 1 refused"),
        "{stdout}"
    );
    assert!(
        stderr.contains("bindings.txt:5002: 2001:db8:bee5::c001:babe:"),
        "refusal by line: {stderr}"
    );
    assert_eq!(d.cli(&["bindings", "--count"])?.trim(), "5001");
    let routes = String::from_utf8(
        ha.exec("ip", &["-6", "route", "show", "proto", "0xa6"])?
            .stdout,
    )?;
    assert!(routes.contains("2001:db8:100::/48"), "{routes}");
    Ok(())
}
