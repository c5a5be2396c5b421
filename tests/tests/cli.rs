//! The command line as an operator meets it: `hagent config check` on the seed talk's own
//! mip6d.conf (typo and all), and a client without a daemon.

use std::process::Command;

use tests::{TempDir, hagent_bin};

const SEED_HA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed-ha-mip6d.conf");

#[test]
fn config_check_reports_the_seeds_typo_with_its_position() -> anyhow::Result<()> {
    let out = Command::new(hagent_bin()?)
        .args(["config", "check", SEED_HA])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("seed-ha-mip6d.conf:12:20: invalid IPv6 address \"2001:db8:bee5::coo1:babe\" in HomeAgentAddress"),
        "{err}"
    );
    assert!(
        err.contains("did you mean 2001:db8:bee5::c001:babe"),
        "{err}"
    );
    Ok(())
}

#[test]
fn config_check_prints_the_effective_configuration() -> anyhow::Result<()> {
    let dir = TempDir::new("cli")?;
    let path = dir.join("mip6d.conf");
    std::fs::write(&path, tests::topology::seed_ha_mip6d_conf())?;
    let out = Command::new(hagent_bin()?)
        .args(["config", "check"])
        .arg(&path)
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("role = \"home_agent\""), "{stdout}");
    assert!(stdout.contains("default_acl = \"deny\""), "{stdout}");
    assert!(
        stdout.contains("hoa = \"2001:db8:bee5::dead:face\""),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "\"BindAclPolicy\" is not a UMIP keyword; read as UMIP's \"BindingAclPolicy\""
        ),
        "{stderr}"
    );
    // The effective configuration is itself a valid hagent configuration.
    let toml = dir.join("effective.toml");
    std::fs::write(&toml, stdout.as_bytes())?;
    let again = Command::new(hagent_bin()?)
        .args(["config", "check"])
        .arg(&toml)
        .output()?;
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    Ok(())
}

#[test]
fn unknown_directive_is_an_error() -> anyhow::Result<()> {
    let dir = TempDir::new("cli")?;
    let path = dir.join("mip6d.conf");
    std::fs::write(
        &path,
        "NodeConfig HA;\nInterface \"eth0\";\nHaMaxBindingLyfe 600;\n",
    )?;
    let out = Command::new(hagent_bin()?)
        .args(["config", "check"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mip6d.conf:3:1:") && err.contains("HaMaxBindingLyfe"),
        "{err}"
    );
    Ok(())
}

/// What an operator types against a running home agent: `status`, `binding add|show|list|del`
/// (and the `bindings` alias), `stats` without and with `--all`, and `HAGENT_SOCKET` instead
/// of `--socket`.
#[test]
fn operator_commands_against_a_running_home_agent() -> anyhow::Result<()> {
    use tests::{
        require_root,
        topology::{Hagent, SeedLab, seed},
    };
    if !require_root("operator_commands_against_a_running_home_agent") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let conf = format!(
        "role = \"home_agent\"\n\n[home_agent]\naddresses = [\"{}\"]\n\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = 1024\nmax_prefixes = 64\n",
        seed::HA
    );
    let ha = Hagent::start(&lab.ha, &conf)?;
    let status = ha.cli(&["status"])?;
    assert!(status.contains(env!("CARGO_PKG_VERSION")), "{status}");
    assert!(status.contains("role:       home_agent"), "{status}");
    assert!(status.contains("interface:  eth0"), "{status}");
    assert!(status.contains("bindings:   0 of 1024"), "{status}");
    let s: serde_json::Value = serde_json::from_str(&ha.cli(&["status", "--json"])?)?;
    assert_eq!(s["protocol"], 1, "{s}");
    assert_eq!(s["interfaces"][0]["interface"], "eth0", "{s}");

    // A monitor, started before the changes, sees each of them as one NDJSON line.
    let mut monitor = Command::new(hagent_bin()?)
        .args(["monitor", "--json", "--socket"])
        .arg(&ha.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let (tx, events) = std::sync::mpsc::channel();
    let stdout = monitor.stdout.take().expect("piped");
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    // The monitor says on stderr when the daemon has subscribed it.
    let mut hello = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(monitor.stderr.take().expect("piped")),
        &mut hello,
    )?;
    assert!(hello.contains("monitoring binding events"), "{hello:?}");
    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    let shown = ha.cli(&["binding", "show", seed::HOA])?;
    assert!(shown.contains(seed::COA), "{shown}");
    assert!(ha.cli(&["binding", "show", "2001:db8:bee5::1234"]).is_err());
    assert_eq!(ha.cli(&["binding", "list", "--count"])?.trim(), "1");
    assert_eq!(ha.cli(&["bindings", "--count"])?.trim(), "1");

    let moved_to = "2001:db8:c001::2";
    ha.cli(&["binding", "add", seed::HOA, moved_to, "--lifetime", "600"])?;
    let next = || -> anyhow::Result<serde_json::Value> {
        let l = events.recv_timeout(std::time::Duration::from_secs(10))?;
        Ok(serde_json::from_str(&l)?)
    };
    let created = next()?;
    assert_eq!(
        (created["event"].as_str(), created["hoa"].as_str()),
        (Some("created"), Some(seed::HOA)),
        "{created}"
    );
    assert_eq!(created["origin"], "static", "{created}");
    let moved = next()?;
    assert_eq!(moved["event"], "moved", "{moved}");
    assert_eq!(moved["coa"], moved_to, "{moved}");
    assert_eq!(moved["previous_coa"], seed::COA, "{moved}");

    // Only non-zero counters by default; --all shows every one.
    let short = ha.cli(&["stats"])?;
    let all = ha.cli(&["stats", "--all"])?;
    assert!(short.contains("counters at zero not shown"), "{short}");
    assert!(!all.contains("not shown"), "{all}");
    assert!(
        short.lines().count() < all.lines().count(),
        "{short}\n---\n{all}"
    );
    assert!(
        all.contains("xdp_pass") || all.lines().count() > 30,
        "{all}"
    );

    // HAGENT_SOCKET instead of --socket.
    let out = Command::new(hagent_bin()?)
        .args(["binding", "del", seed::HOA])
        .env("HAGENT_SOCKET", &ha.socket)
        .output()?;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(ha.cli(&["bindings", "--count"])?.trim(), "0");
    let removed = next()?;
    assert_eq!(removed["event"], "removed", "{removed}");
    monitor.kill()?;
    monitor.wait()?;
    Ok(())
}
