//! `Type=notify` (issue 13): under a `$NOTIFY_SOCKET` the daemon tells systemd READY=1 once
//! its control socket answers, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a SIGHUP
//! or `hagent config reload`, and STOPPING=1 at SIGTERM. The test plays systemd: it binds the
//! datagram socket and reads what arrives.

use std::{os::unix::net::UnixDatagram, time::Duration};

use tests::{
    Netns, TempDir, hagent_bin, require_root, run,
    topology::{addr, test_bpffs, veth},
};

/// The next notification within `timeout`, as its `KEY=value` lines.
fn next(listener: &UnixDatagram, timeout: Duration) -> anyhow::Result<Vec<String>> {
    listener.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 4096];
    let n = listener
        .recv(&mut buf)
        .map_err(|e| anyhow::anyhow!("no notification within {timeout:?}: {e}"))?;
    Ok(String::from_utf8(buf[..n].to_vec())?
        .lines()
        .map(str::to_string)
        .collect())
}

fn has(msg: &[String], line: &str) -> bool {
    msg.iter().any(|l| l == line)
}

/// A RELOADING=1 with a plausible MONOTONIC_USEC, then READY=1.
fn expect_reload(listener: &UnixDatagram, log: &dyn Fn() -> String) -> anyhow::Result<()> {
    let before = hagent::notify::monotonic_usec();
    let msg = next(listener, Duration::from_secs(10))?;
    assert!(has(&msg, "RELOADING=1"), "{msg:?}; log:\n{}", log());
    let usec: u64 = msg
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {msg:?}"))
        .parse()?;
    // Taken on the same clock, around the time the reload was asked for.
    assert!(
        usec + 5_000_000 > before && usec <= hagent::notify::monotonic_usec(),
        "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC now ({before})"
    );
    let msg = next(listener, Duration::from_secs(10))?;
    assert!(has(&msg, "READY=1"), "{msg:?}; log:\n{}", log());
    assert!(
        msg.iter()
            .any(|l| l.starts_with("STATUS=") && l.ends_with("configuration reloaded")),
        "{msg:?}"
    );
    Ok(())
}

#[test]
fn tells_systemd_ready_reloading_and_stopping() -> anyhow::Result<()> {
    if !require_root("tells_systemd_ready_reloading_and_stopping") {
        return Ok(());
    }
    let ha = Netns::new("notify")?;
    let peer = Netns::new("notifypeer")?;
    veth(&ha, "home0", &peer, "peer0")?;
    ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    addr(&ha, "home0", "2001:db8:bee5::c001:babe/64")?;

    let dir = TempDir::new("notify")?;
    let config = dir.join("hagent.toml");
    std::fs::write(
        &config,
        "[home_agent]\naddresses = [\"2001:db8:bee5::c001:babe\"]\n[dataplane]\ninterfaces = [\"home0\"]\nmax_bindings = 64\n",
    )?;
    let notify_path = dir.join("notify");
    let listener = UnixDatagram::bind(&notify_path)?;
    let socket = dir.join("hagent.sock");
    let run_dir = dir.join("run");
    let bpffs = test_bpffs()?;
    let instance = format!("notify{}", std::process::id());
    let bin = hagent_bin()?;
    let notify_env = format!("NOTIFY_SOCKET={}", notify_path.display());
    // `env` execs hagent in place: the pid signalled below is the daemon's.
    let args: Vec<&str> = vec![
        &notify_env,
        bin.to_str().unwrap(),
        "run",
        "-c",
        config.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--instance",
        &instance,
        "--bpffs",
        bpffs.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--fresh",
    ];
    let mut daemon = ha.spawn("env", &args, &dir.join("hagent.log"))?;
    let log = || daemon_log(&dir);

    // READY=1, and by then the control socket answers.
    let msg = next(&listener, Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("{e:#}; log:\n{}", log()))?;
    assert!(has(&msg, "READY=1"), "{msg:?}; log:\n{}", log());
    let status = msg
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS in {msg:?}"));
    assert!(
        status.contains("home agent on home0") && status.contains(socket.to_str().unwrap()),
        "STATUS={status}"
    );
    let stats = run(std::process::Command::new(&bin)
        .args(["stats", "--json", "--socket"])
        .arg(&socket))?;
    assert!(stats.status.success());

    // SIGHUP: RELOADING=1 + MONOTONIC_USEC, then READY=1.
    daemon.signal(libc::SIGHUP);
    expect_reload(&listener, &log)?;
    // `hagent config reload` goes the same way.
    let out = run(std::process::Command::new(&bin)
        .args(["config", "reload", "--socket"])
        .arg(&socket))?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied:"));
    expect_reload(&listener, &log)?;

    // SIGTERM: STOPPING=1, and a clean exit.
    daemon.signal(libc::SIGTERM);
    let msg = next(&listener, Duration::from_secs(10))?;
    assert!(has(&msg, "STOPPING=1"), "{msg:?}; log:\n{}", log());
    let status = daemon.wait_exit(Duration::from_secs(20))?;
    assert!(status.success(), "exit {status}; log:\n{}", log());
    // Nothing after STOPPING=1.
    listener.set_nonblocking(true)?;
    let mut buf = [0u8; 4096];
    assert!(
        listener.recv(&mut buf).is_err(),
        "a message after STOPPING=1"
    );
    Ok(())
}

fn daemon_log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("hagent.log")).unwrap_or_default()
}
