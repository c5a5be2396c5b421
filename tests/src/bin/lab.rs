//! `cargo xtask run`: the seed talk's story, live, on one machine. A router joins the home
//! link, two foreign links and the correspondent's link; the home agent and our mobile node
//! run hagent from real configuration files (printed below); the mobile node goes home →
//! foreign link A → foreign link B → home while the correspondent pings its home address and
//! keeps a TCP conversation open with it. Exits 0 only if every step worked.
//!
//! `--interactive` leaves the lab up (namespaces `halab-*`, daemons running) with
//! instructions; `--down` removes it. Ctrl-C tears everything down at any point.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tests::{
    TempDir,
    roaming::{Conversation, handover, now, ping_replies},
    step,
    topology::{
        Hagent, Link, RoamingLab, roaming, roaming_mn_mip6d_conf, seed, seed_ha_mip6d_conf,
    },
    wait_for,
};

const PREFIX: &str = "halab";
const PIDS: &str = "/run/hagent-lab/pids";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: tearing the lab down");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let result = if args.iter().any(|a| a == "--down") {
        down()
    } else {
        run(args.iter().any(|a| a == "--interactive"))
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lab: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Removes an interactive lab: its daemons, then its namespaces.
fn down() -> anyhow::Result<bool> {
    if let Ok(pids) = std::fs::read_to_string(PIDS) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) of a pid this lab recorded.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        std::thread::sleep(Duration::from_secs(1));
        let _ = std::fs::remove_file(PIDS);
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let mut removed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(&format!("{PREFIX}-")) {
            std::process::Command::new("ip")
                .args(["netns", "del", name])
                .status()?;
            removed += 1;
        }
    }
    // The router's pinned XDP links (the namespaces are gone; this frees the programs).
    let _ = std::fs::remove_dir_all(tests::topology::LAB_PIN_DIR);
    println!("lab down ({removed} namespaces removed)");
    Ok(true)
}

struct Step {
    what: String,
    ok: bool,
    lost: Option<u64>,
    seconds: Option<f64>,
    note: String,
}

fn bindings(ha: &Hagent) -> serde_json::Value {
    ha.cli(&["bindings", "--json"])
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// One line of the live view.
fn live(t0: Instant, ha: &Hagent, mn: &Hagent, ping_log: &str, client_log: &str) {
    let b = bindings(ha);
    let binding = match b.get(0) {
        Some(b) => format!(
            "HA: {} → {} ({}s left), tunnelled {} / reverse {}",
            b["hoa"].as_str().unwrap_or("?"),
            b["coa"].as_str().unwrap_or("?"),
            b["lifetime_remaining_s"],
            b["packets_tunnelled"],
            b["packets_reverse"]
        ),
        None => "HA: no binding (the MN is home)".into(),
    };
    let m = mn.stats().unwrap_or_default();
    let state = m["mobile_node"]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let replies = ping_replies(ping_log).len();
    let echoes = client_log.lines().filter(|l| l.starts_with("echo")).count();
    println!(
        "  [{:5.1}s] MN {state:<11} | {binding} | ping replies {replies} | tcp echoes {echoes}",
        t0.elapsed().as_secs_f64()
    );
}

fn run(interactive: bool) -> anyhow::Result<bool> {
    step("building the lab: four network namespaces, a bridge for the home link");
    let lab = RoamingLab::named(PREFIX).context(
        "creating the lab's namespaces failed; if a lab is still up, run `cargo xtask run --down`",
    )?;
    println!(
        "  router: home link {} (bridge), foreign link A {}, foreign link B {}, CN link {}",
        seed::HOME_PREFIX,
        seed::FOREIGN_PREFIX,
        roaming::FOREIGN_B_PREFIX,
        seed::CN_PREFIX
    );
    println!(
        "  HA {} | MN home address {} | CN {}",
        seed::HA,
        seed::HOA,
        seed::CN
    );

    let ha_conf = seed_ha_mip6d_conf();
    let mn_conf = roaming_mn_mip6d_conf();
    step("the home agent's /etc/mip6d.conf (the seed talk's, typo fixed, IPsec off)");
    println!("{}", indent(&ha_conf));
    step("the mobile node's /etc/mip6d.conf");
    println!("{}", indent(&mn_conf));

    step("starting hagent on the HA and on the MN");
    let ha = Hagent::start_with(&lab.ha, "mip6d.conf", &ha_conf)?;
    let mn = Hagent::start_with(&lab.mn, "mip6d.conf", &mn_conf)?;
    tests::roaming::wait_mn_state(&mn, "home", Duration::from_secs(10))?;
    println!("  the mobile node is at home: no binding, no tunnel");

    let dir = TempDir::new("lab")?;
    let Conversation {
        mut ping,
        server,
        mut client,
        stop,
    } = Conversation::start(&lab.cn, &lab.mn, seed::HOA, dir.path())?;
    step("the CN pings the MN's home address (20/s) and keeps a TCP conversation with it");

    let t0 = Instant::now();
    let mut steps = vec![];
    let mut moves = vec![];
    for _ in 0..2 {
        interrupted()?;
        std::thread::sleep(Duration::from_secs(1));
        live(t0, &ha, &mn, &ping.log(), &client.log());
    }
    for (link, coa, explain) in [
        (
            Link::ForeignA,
            Some(seed::COA),
            "the MN leaves home: it gets a care-of address on link A and sends a Binding Update; the HA checks the home address (DAD), accepts, answers for it on the home link (XDP) and tunnels",
        ),
        (
            Link::ForeignB,
            Some(roaming::COA_B),
            "the MN moves on to link B: a new care-of address, a new Binding Update; the HA moves the tunnel (one map update)",
        ),
        (
            Link::Home,
            None,
            "the MN returns home: it deregisters (lifetime 0) and reclaims its home address with a Neighbor Advertisement",
        ),
    ] {
        interrupted()?;
        step(&format!("to the {}: {explain}", link.name()));
        let t = now();
        lab.attach(link)?;
        let want = if coa.is_some() { "registered" } else { "home" };
        let ok = wait_for(
            &format!("the MN to be {want}"),
            Duration::from_secs(15),
            || {
                interrupted()?;
                let s = mn.stats()?;
                let b = bindings(&ha);
                let done = s["mobile_node"]["state"] == want
                    && match coa {
                        Some(c) => b[0]["coa"] == c,
                        None => b.as_array().is_some_and(|a| a.is_empty()),
                    };
                Ok(done.then_some(()))
            },
        );
        for _ in 0..3 {
            interrupted()?;
            std::thread::sleep(Duration::from_secs(1));
            live(t0, &ha, &mn, &ping.log(), &client.log());
        }
        moves.push((link, t));
        steps.push(Step {
            what: format!("to the {}", link.name()),
            ok: ok.is_ok(),
            lost: None,
            seconds: None,
            note: ok.err().map(|e| format!("{e:#}")).unwrap_or_default(),
        });
    }

    std::fs::write(&stop, b"")?;
    let client_log = wait_for(
        "the TCP conversation to end",
        Duration::from_secs(20),
        || {
            let log = client.log();
            Ok((log.contains("ok ") || log.contains("error")).then_some(log))
        },
    )
    .unwrap_or_else(|e| format!("error: {e:#}"));
    let ping_log = ping.log();
    ping.terminate(Duration::from_secs(5))?;
    let _ = client.check_running();
    let replies = ping_replies(&ping_log);
    for (s, (_, t)) in steps.iter_mut().zip(&moves) {
        if let Some(h) = handover(&replies, *t) {
            s.lost = Some(h.lost);
            s.seconds = Some(h.seconds);
        } else {
            s.ok = false;
            s.note = "no ping reply after the move".into();
        }
    }
    let tcp_ok = client_log.contains("ok ");
    steps.push(Step {
        what: "TCP conversation across all moves".into(),
        ok: tcp_ok,
        lost: None,
        seconds: None,
        note: client_log.lines().last().unwrap_or("").to_string(),
    });

    step("summary");
    println!(
        "  {:<40} {:>6} {:>10} {:>12}  note",
        "step", "result", "ping lost", "handover"
    );
    for s in &steps {
        println!(
            "  {:<40} {:>6} {:>10} {:>12}  {}",
            s.what,
            if s.ok { "ok" } else { "FAILED" },
            s.lost.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
            s.seconds
                .map(|t| format!("{t:.2} s"))
                .unwrap_or_else(|| "-".into()),
            s.note
        );
    }
    let all_ok = steps.iter().all(|s| s.ok);
    drop(server);

    if interactive {
        let (ha_sock, mn_sock) = (ha.socket.clone(), mn.socket.clone());
        let pids = format!("{} {}", ha.detach(), mn.detach());
        std::fs::create_dir_all("/run/hagent-lab")?;
        std::fs::write(PIDS, pids)?;
        lab.keep();
        step("the lab stays up; try:");
        println!("  ip netns exec {PREFIX}-cn ping {}", seed::HOA);
        println!(
            "  ip netns exec {PREFIX}-mn ping -I {} {}",
            seed::HOA,
            seed::CN
        );
        println!(
            "  (move the MN: ip -n {PREFIX}-mn link set home0 down; ip -n {PREFIX}-mn link set fa0 up;"
        );
        println!(
            "   ip -n {PREFIX}-mn -6 route replace default via {} dev fa0 mtu 1460)",
            seed::ROUTER_FOREIGN
        );
        let bin = tests::hagent_bin()?;
        println!("  {} status --socket {}", bin.display(), ha_sock.display());
        println!(
            "  {} binding list --socket {}",
            bin.display(),
            ha_sock.display()
        );
        println!("  {} monitor --socket {}", bin.display(), ha_sock.display());
        println!("  {} stats --socket {}", bin.display(), mn_sock.display());
        println!("  cargo xtask run --down   # removes it all");
    } else {
        let _ = ha.stop();
        let _ = mn.stop();
    }
    step(if all_ok {
        "every step worked"
    } else {
        "some steps FAILED"
    });
    Ok(all_ok)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
