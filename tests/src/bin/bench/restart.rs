//! `cargo xtask bench restart`: what a SIGKILL and restart of the home agent costs the traffic
//! through it. The roaming lab (the seed's addresses), the mobile node registered from foreign
//! link A, a flood ping from the correspondent to the home address (`ping -f -l 64`: 64 echo
//! requests in flight, the next sent as each answer comes) through the HA's tunnel and back
//! through the reverse tunnel — for the same time twice in one run: undisturbed, and with the
//! HA SIGKILLed and restarted `HAGENT_BENCH_RESTARTS` times (default 3). Loss and rate of both
//! side by side; the ratio is the figure. Bounded: each flood is `-w` seconds long.

use std::time::{Duration, Instant};

use tests::{
    TempDir,
    roaming::{ping_counts, wait_mn_state},
    step,
    topology::{Hagent, Link, RoamingLab, roaming_mn_config, seed, seed_ha_mip6d_conf},
};

/// Seconds per flood.
fn seconds() -> u64 {
    if crate::quick() { 3 } else { 12 }
}

struct Flood {
    sent: u64,
    received: u64,
    seconds: f64,
}

/// Floods for `seconds()`; `during` runs meanwhile (after a second).
fn flood(
    lab: &RoamingLab,
    dir: &TempDir,
    name: &str,
    during: impl FnOnce() -> anyhow::Result<Vec<Duration>>,
) -> anyhow::Result<(Flood, Vec<Duration>)> {
    let t = Instant::now();
    let mut ping = lab.cn.spawn(
        "ping",
        &[
            "-6",
            "-f",
            "-l",
            "64",
            "-q",
            "-w",
            &seconds().to_string(),
            "-W",
            "1",
            seed::HOA,
        ],
        &dir.join(&format!("{name}.log")),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let restarts = during()?;
    ping.wait_exit(Duration::from_secs(seconds() + 20))?;
    let log = ping.log();
    let (sent, received) = ping_counts(&log).ok_or_else(|| anyhow::anyhow!("ping said: {log}"))?;
    Ok((
        Flood {
            sent,
            received,
            seconds: t.elapsed().as_secs_f64(),
        },
        restarts,
    ))
}

pub fn run() -> anyhow::Result<()> {
    let restarts: u32 = std::env::var("HAGENT_BENCH_RESTARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if crate::quick() { 1 } else { 3 });
    let secs = seconds();
    step("the roaming lab, the MN registered from foreign link A");
    let lab = RoamingLab::new()?;
    let mut ha = Hagent::start_with(&lab.ha, "mip6d.conf", &seed_ha_mip6d_conf())?;
    let mn = Hagent::start(&lab.mn, &roaming_mn_config("native"))?;
    wait_mn_state(&mn, "home", Duration::from_secs(10))?;
    lab.attach(Link::ForeignA)?;
    wait_mn_state(&mn, "registered", Duration::from_secs(15))?;
    let dir = TempDir::new("bench-restart")?;

    step(&format!("{secs} s of flood ping, undisturbed"));
    let (calm, _) = flood(&lab, &dir, "calm", || Ok(vec![]))?;
    step(&format!(
        "{secs} s of flood ping, the HA SIGKILLed and restarted {restarts} times"
    ));
    let gap = Duration::from_millis((secs * 1000 - 2000) / u64::from(restarts.max(1)));
    let (rough, took) = flood(&lab, &dir, "restarts", || {
        let mut took = Vec::new();
        for _ in 0..restarts {
            let t = Instant::now();
            ha.process.kill()?;
            std::thread::sleep(Duration::from_millis(300));
            ha.restart(None)?;
            took.push(t.elapsed());
            std::thread::sleep(gap.saturating_sub(t.elapsed()));
        }
        Ok(took)
    })?;
    let rate = |f: &Flood| f.received as f64 / f.seconds;
    let loss = |f: &Flood| f.sent - f.received.min(f.sent);
    println!();
    println!("Flood ping CN → HoA → CN through the HA's tunnel, {secs} s each, one run, 2-core VM");
    println!(
        "undisturbed:            {} sent, {} answered, {} lost; {:.0} round trips/s",
        calm.sent,
        calm.received,
        loss(&calm),
        rate(&calm)
    );
    println!(
        "{restarts} SIGKILL + restarts: {} sent, {} answered, {} lost; {:.0} round trips/s (×{:.2} of undisturbed); restarts took {:?}",
        rough.sent,
        rough.received,
        loss(&rough),
        rate(&rough),
        rate(&rough) / rate(&calm),
        took
    );
    Ok(())
}
