//! End to end in the seed talk's topology: a binding installed through the daemon's control
//! API; ping and a 1 MB TCP transfer from the CN to the HoA arrive at the CoA tunnelled (seen
//! by tcpdump on the router's foreign link), and the MN's reverse-tunnelled answers reach the
//! CN. The MN side runs hagent in the mobile node role with a static binding (its signalling
//! comes with the mobile node issue), so both tunnel ends are our data plane.

use std::{process::Command, time::Duration};

use tests::{
    Netns, TempDir, require_root, run,
    topology::{Hagent, SeedLab, ha_config, mn_config, seed},
    wait_for,
};

const PYTHON: &str = "/usr/bin/python3";

/// Receives one TCP connection on [HoA]:5001, answers with the SHA-256 of what it got.
const SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
h = hashlib.sha256(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d); n += len(d)
c.sendall(h.hexdigest().encode())
c.close()
print(n, h.hexdigest(), flush=True)
"#;

/// Sends 1 MB of random bytes, prints its SHA-256 and the server's answer.
const CLIENT: &str = r#"
import hashlib, os, socket, sys
data = os.urandom(1 << 20)
c = socket.create_connection((sys.argv[1], 5001), timeout=30)
c.sendall(data); c.shutdown(socket.SHUT_WR)
answer = b""
while True:
    d = c.recv(4096)
    if not d: break
    answer += d
print(hashlib.sha256(data).hexdigest(), answer.decode())
"#;

fn binding(hagent: &Hagent) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&hagent.cli(&["bindings", "--json"])?)?;
    Ok(v[0].clone())
}

fn tunnel(mode: &str) -> anyhow::Result<()> {
    let lab = SeedLab::new()?;
    lab.mn_keeps_hoa_on_lo()?;

    let ha = Hagent::start(&lab.ha, &ha_config(mode))?;
    let mn = Hagent::start(&lab.mn, &mn_config(mode))?;
    ha.cli(&["binding", "add", seed::HOA, seed::COA])?;
    mn.cli(&["binding", "add", seed::HOA, seed::COA])?;
    let b = binding(&ha)?;
    assert_eq!(b["hoa"], seed::HOA);
    assert_eq!(b["coa"], seed::COA);
    assert_eq!(b["ha_address"], seed::HA);

    // An independent observer: every packet for the HoA crosses the foreign link as
    // IPv6-in-IPv6 from the HA to the CoA.
    let dir = TempDir::new("seed")?;
    let pcap = dir.join("foreign.pcap");
    let mut tcpdump = lab
        .router
        .tcpdump("foreign0", "ip6 and ip6[6] == 41", &pcap)?;

    if let Some(secs) = std::env::var("HAGENT_TEST_PAUSE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // Debugging aid: look around the lab before the traffic starts.
        eprintln!(
            "pausing {secs}s; namespaces: {} {} {} {}",
            lab.router.name(),
            lab.ha.name(),
            lab.mn.name(),
            lab.cn.name()
        );
        std::thread::sleep(Duration::from_secs(secs));
    }
    let ping = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "5", "-i", "0.2", "-W", "2", seed::HOA])
        .output()?;
    let text = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(
        text.contains(" 5 received"),
        "CN -> HoA ping: {text}\nHA: {}\nMN: {}",
        ha.cli(&["stats"])?,
        mn.cli(&["stats"])?
    );

    // The HA itself talks to the HoA (its kernel's packets take the TC path): no route per
    // binding sizes them, so the first 1500-byte ping does not fit the tunnel and comes back as
    // a Packet Too Big to the HA's own stack; the next ones are fragmented to fit.
    let ping = lab
        .ha
        .command("ping")
        .args([
            "-6",
            "-c",
            "4",
            "-i",
            "0.3",
            "-W",
            "2",
            "-s",
            "1452",
            seed::HOA,
        ])
        .output()?;
    let text = String::from_utf8_lossy(&ping.stdout).to_string();
    let received: u32 = text
        .split(", ")
        .find_map(|p| p.strip_suffix(" received")?.parse().ok())
        .unwrap_or(0);
    assert!(
        received >= 2,
        "HA -> HoA, 1500 bytes: {text}
HA: {}",
        ha.cli(&["stats"])?
    );
    assert!(ha.counter("tc_ptb_sent")? >= 1);
    assert!(
        ha.counter("tc_nd_reflected")? >= 1,
        "the HA's kernel resolved the HoA to itself"
    );

    // 1 MB over TCP from the CN to the HoA, checksum verified at both ends.
    let mut server = lab
        .mn
        .spawn(PYTHON, &["-c", SERVER, seed::HOA], &dir.join("server.log"))?;
    wait_for("the MN's server", Duration::from_secs(10), || {
        server.check_running()?;
        Ok(server.log().contains("listening").then_some(()))
    })?;
    let out = lab.cn.exec(PYTHON, &["-c", CLIENT, seed::HOA])?;
    let line = String::from_utf8(out.stdout)?;
    let hashes: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(hashes.len(), 2, "client output: {line}");
    assert_eq!(
        hashes[0], hashes[1],
        "the MN received other bytes than the CN sent"
    );
    wait_for("the server to finish", Duration::from_secs(10), || {
        Ok(server.log().contains(hashes[0]).then_some(()))
    })?;
    assert!(server.log().contains(&format!("{} {}", 1 << 20, hashes[0])));

    // Counters on both ends.
    let b = binding(&ha)?;
    let tunnelled = b["packets_tunnelled"].as_u64().unwrap();
    let reverse = b["packets_reverse"].as_u64().unwrap();
    assert!(
        tunnelled >= 5 + 700,
        "HA tunnelled only {tunnelled} packets: {b}"
    );
    assert!(
        reverse >= 5,
        "HA saw only {reverse} reverse-tunnelled packets: {b}"
    );
    assert!(b["bytes_tunnelled"].as_u64().unwrap() >= 1 << 20);
    assert!(
        mn.counter("mn_decap")? >= tunnelled,
        "MN decapsulated fewer packets than the HA tunnelled"
    );
    assert_eq!(ha.counter("drop_decap_wrong_care_of")?, 0);
    assert_eq!(ha.counter("drop_decap_unknown_source")?, 0);

    // Let tcpdump write out what it has buffered before stopping it.
    let mut last = 0;
    wait_for("tcpdump to catch up", Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(500));
        let size = std::fs::metadata(&pcap)?.len();
        let settled = size == last;
        last = size;
        Ok(settled.then_some(()))
    })?;
    tcpdump.terminate(Duration::from_secs(5))?;
    let tcpdump_log = tcpdump.log();
    let out = run(Command::new("tcpdump").args(["-n", "-r", pcap.to_str().unwrap()]))?;
    let dump = String::from_utf8_lossy(&out.stdout);
    let from_ha = dump
        .lines()
        .filter(|l| l.contains(&format!("{} > {}", seed::HA, seed::COA)))
        .count() as u64;
    assert!(
        from_ha >= tunnelled,
        "tcpdump saw {from_ha} tunnel packets HA -> CoA on the foreign link, the HA tunnelled {tunnelled}\n{tcpdump_log}"
    );

    // Deleting the binding stops the tunnel and removes the kernel state.
    ha.cli(&["binding", "del", seed::HOA])?;
    let neigh = lab.ha.exec("ip", &["-6", "neigh", "show", "proxy"])?;
    assert!(!String::from_utf8_lossy(&neigh.stdout).contains(seed::HOA));
    let ping = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "2", "-i", "0.2", "-W", "1", seed::HOA])
        .output()?;
    assert!(
        !ping.status.success(),
        "ping still answered after the binding was removed"
    );
    drop(server);
    let status = ha.stop()?;
    assert!(status.success());
    let routes = lab
        .ha
        .exec("ip", &["-6", "route", "show", "proto", "0xa6"])?;
    assert!(
        routes.stdout.is_empty(),
        "routes left behind: {}",
        String::from_utf8_lossy(&routes.stdout)
    );
    let _ = Netns::attach(lab.ha.name());
    Ok(())
}

#[test]
fn seed_topology_native_xdp() -> anyhow::Result<()> {
    if !require_root("seed_topology_native_xdp") {
        return Ok(());
    }
    tunnel("native")
}

#[test]
fn seed_topology_generic_xdp() -> anyhow::Result<()> {
    if !require_root("seed_topology_generic_xdp") {
        return Ok(());
    }
    tunnel("generic")
}
