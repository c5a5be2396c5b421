//! `cargo xtask bench signalling`: what registrations cost and what a flood does, end to end.
//!
//! Four namespaces: `ha` runs the daemon, its home link `eth0` goes to `home` (a host that
//! hears the DAD probes), `eth1` to `gen` (a generator: the benchmark's mobile nodes, or an
//! attacker's flood) and `eth2` to `mn` (one mobile node the ACL allows). BUs are built whole
//! with a Home Address option and checksum and sent on raw sockets; BAs are counted on
//! AF_PACKET sockets. Every phase is bounded in count and in time.
//!
//! Scenarios (`HAGENT_BENCH_MNS` scales the registrations, default 100,000;
//! `HAGENT_BENCH_FLOOD_S` the floods, default 30):
//!  1. new registrations with DAD off: the rate with 1,000 bindings in the cache and with
//!     100,000, refreshes, kernel work and memory per binding;
//!  2. new registrations with DAD on (probes overlapped);
//!  3. a flood of random new HoAs under `deny` with one ACL'd mobile node: its BU answered at
//!     every try, `hagent bindings` latency, memory, SIGTERM in the middle of it;
//!  4. the same flood under `allow` with a 100,000-binding cache: 130 beyond it without DAD,
//!     nothing evicted, refreshes answered, memory per binding;
//!  5. restart: a daemon with `n` registered bindings is SIGKILLed and started again; the time
//!     from exec to a daemon that answers with every binding restored and reconciled, beside
//!     the start of the same daemon with an empty cache (same run, same machine), and a
//!     replayed BU answered 135 after it;
//!  6. static bindings: one `hagent binding add` process each (1,000) beside `hagent binding
//!     load` (the bulk path, `n` lines) into the same daemon, DAD off.

use std::{
    net::Ipv6Addr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tests::{
    Netns,
    flood::{Flood, Gen, bu_packet},
    step,
    topology::{Hagent, addr, veth},
};

const HA: &str = "2001:db8:bee5::c001:babe";
const GEN_COA: &str = "2001:db8:f00d::1";
const MN_COA: &str = "2001:db8:f00e::1";
const MN_HOA: &str = "2001:db8:bee5::dead:face";
/// Unanswered BUs a generator keeps in flight.
const WINDOW: usize = 16_384;

fn a(s: &str) -> Ipv6Addr {
    s.parse().expect("address")
}

/// The `i`-th home address of the benchmark's mobile nodes.
fn hoa(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(a("2001:db8:bee5::1:0:0")) + i as u128)
}

struct Lab {
    ha: Netns,
    _home: Netns,
    gen_ns: Netns,
    mn: Netns,
    /// The generator's and the mobile node's interfaces, for raw sends.
    gen_if: u32,
    mn_if: u32,
}

/// What the scenarios share: `n` registrations, floods of `flood_s` seconds.
struct Params {
    n: u32,
    flood_s: u64,
}

fn lab() -> anyhow::Result<Lab> {
    let mut lab = Lab {
        ha: Netns::new("sig-ha")?,
        _home: Netns::new("sig-home")?,
        gen_ns: Netns::new("sig-gen")?,
        mn: Netns::new("sig-mn")?,
        gen_if: 0,
        mn_if: 0,
    };
    lab.ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    veth(&lab.ha, "eth0", &lab._home, "eth0")?;
    veth(&lab.ha, "eth1", &lab.gen_ns, "eth0")?;
    veth(&lab.ha, "eth2", &lab.mn, "eth0")?;
    addr(&lab.ha, "eth0", &format!("{HA}/64"))?;
    addr(&lab._home, "eth0", "2001:db8:bee5::1/64")?;
    addr(&lab.ha, "eth1", "2001:db8:f00d::ffff/64")?;
    addr(&lab.gen_ns, "eth0", &format!("{GEN_COA}/64"))?;
    addr(&lab.ha, "eth2", "2001:db8:f00e::ffff/64")?;
    addr(&lab.mn, "eth0", &format!("{MN_COA}/64"))?;
    for (ns, via) in [
        (&lab.gen_ns, "2001:db8:f00d::ffff"),
        (&lab.mn, "2001:db8:f00e::ffff"),
    ] {
        ns.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:bee5::/64",
            "via",
            via,
            "dev",
            "eth0",
        ])?;
    }
    (lab.gen_if, lab.mn_if) = (lab.gen_ns.ifindex("eth0")?, lab.mn.ifindex("eth0")?);
    Ok(lab)
}

fn config(policy: &str, dad: bool, max_bindings: u32, open_sources: bool) -> String {
    let limits = if open_sources {
        "\n[home_agent.limits]\nregistrations_per_source = 10000000\nregistration_burst_per_source = 10000000\n"
    } else {
        ""
    };
    format!(
        "role = \"home_agent\"\n[home_agent]\naddresses = [\"{HA}\"]\ndad = {dad}\ndefault_acl = \"{policy}\"\n\n[[home_agent.acl]]\nhoa = \"{MN_HOA}\"\naction = \"allow\"\n{limits}\n[dataplane]\ninterfaces = [\"eth0\", \"eth1\", \"eth2\"]\nmax_bindings = {max_bindings}\n"
    )
}

/// Sends one BU per HoA with `seq`, at most WINDOW unanswered, and — as mobile nodes do
/// (InitialBindackTimeoutFirstReg) — sends again what goes unanswered for 1.5 s; returns the
/// time until every one got a BA with status 0.
fn phase(
    g: &Gen,
    coa: Ipv6Addr,
    hoas: &[Ipv6Addr],
    seq: u16,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    const RETRANSMIT: Duration = Duration::from_millis(1500);
    let ha = a(HA);
    let packets: Vec<Vec<u8>> = hoas
        .iter()
        .map(|h| bu_packet(coa, ha, *h, seq, 1000))
        .collect();
    let index: std::collections::HashMap<Ipv6Addr, usize> =
        hoas.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let mut acked = vec![false; hoas.len()];
    let mut n_acked = 0usize;
    // Sent and not yet answered, oldest first.
    let mut in_flight: std::collections::VecDeque<(Instant, usize)> = Default::default();
    let mut got = Vec::new();
    let start = Instant::now();
    let mut next = 0usize;
    while n_acked < hoas.len() {
        let now = Instant::now();
        while let Some(&(t, i)) = in_flight.front() {
            if acked[i] {
                in_flight.pop_front();
            } else if now.duration_since(t) > RETRANSMIT {
                in_flight.pop_front();
                if g.send(&packets[i]) {
                    in_flight.push_back((now, i));
                } else {
                    in_flight.push_front((t, i));
                    break;
                }
            } else {
                break;
            }
        }
        while next < packets.len() && in_flight.len() < WINDOW {
            if !g.send(&packets[next]) {
                break;
            }
            in_flight.push_back((now, next));
            next += 1;
        }
        got.clear();
        g.drain(&mut got);
        for (h, status, _) in &got {
            let Some(&i) = index.get(h) else { continue };
            if *status != 0 {
                bail!("BA status {status} for {h}");
            }
            if !acked[i] {
                acked[i] = true;
                n_acked += 1;
            }
        }
        if got.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
        if start.elapsed() > timeout {
            bail!("only {n_acked} of {} BAs after {timeout:?}", hoas.len());
        }
    }
    Ok(start.elapsed())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Routes and neighbour entries in a namespace (kernel objects).
fn kernel_objects(ns: &Netns) -> anyhow::Result<usize> {
    let mut n = 0;
    for args in [
        &["-6", "route", "show", "table", "all"][..],
        &["-6", "neigh", "show"],
        &["-6", "neigh", "show", "proxy"],
    ] {
        n += String::from_utf8(ns.ip(args)?.stdout)?.lines().count();
    }
    Ok(n)
}

fn stat(s: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = s;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

fn cli_ms(d: &Hagent, args: &[&str]) -> anyhow::Result<f64> {
    let t = Instant::now();
    d.cli(args)?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

type Scenario = fn(&Lab, &Params, &mut Report) -> anyhow::Result<()>;

/// What the scenarios found: lines for the terminal, figures for the report file and plots.
#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
    data: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn push(&mut self, line: String) {
        self.lines.push(line);
    }
    fn set(&mut self, key: &str, value: serde_json::Value) {
        self.data.insert(key.to_string(), value);
    }
}

fn static_bulk(lab: &Lab, p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let n = p.n;
    step(&format!(
        "6. static bindings: 1,000 one process each, then {n} with binding load"
    ));
    let d = Hagent::start(&lab.ha, &config("allow", false, 262_144, true))?;
    let coa = |i: u32| Ipv6Addr::from(u128::from(a("2001:db8:f00d::1:0")) + i as u128);
    let t = Instant::now();
    for i in 0..1000 {
        d.cli(&["binding", "add", &hoa(i).to_string(), &coa(i).to_string()])?;
    }
    let one_by_one = 1000.0 / t.elapsed().as_secs_f64();
    let dir = tests::TempDir::new("bulk")?;
    let file = dir.join("bindings.txt");
    let mut text = String::new();
    for i in 1000..1000 + n {
        text.push_str(&format!("{} {}\n", hoa(i), coa(i)));
    }
    std::fs::write(&file, text)?;
    let t = Instant::now();
    d.cli(&["binding", "load", file.to_str().unwrap()])?;
    let bulk = n as f64 / t.elapsed().as_secs_f64();
    let bound = stat(&d.stats()?, &["bindings"]);
    report.push(format!(
        "6. static bindings, DAD off: `hagent binding add` per binding {one_by_one:.0}/s; `hagent binding load` {bulk:.0}/s for {n} (×{:.1}); {bound} bound",
        bulk / one_by_one
    ));
    Ok(())
}

/// Scenario 7, scale: a cache of 1,000,000 static bindings (`hagent binding load`), the daemon's
/// memory, the data plane's kernel memory, and the start-up after SIGKILL with all of them.
fn scale(lab: &Lab, _p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let n: u32 = if crate::quick() { 20_000 } else { 1_000_000 };
    step(&format!("7. scale: {n} static bindings, memory, start-up"));
    let mut d = Hagent::start(&lab.ha, &config("allow", false, 1 << 20, true))?;
    let mut empty = Vec::new();
    for _ in 0..3 {
        d.process.kill()?;
        empty.push(time_restart(&mut d, 0)?);
    }
    empty.sort();
    let rss0 = rss_kib(d.process.pid())?;
    // The maps of the program this daemon attached (not any other hagent on the machine).
    let program = crate::throughput::daemon_xdp_program(&d, lab.ha.ifindex("eth0")?)?;
    let kernel = crate::program_map_memory(program)?;
    let coa = |i: u32| Ipv6Addr::from(u128::from(a("2001:db8:f00d::1:0")) + i as u128);
    let dir = tests::TempDir::new("scale")?;
    let file = dir.join("bindings.txt");
    let mut text = String::with_capacity(n as usize * 64);
    for i in 0..n {
        text.push_str(&format!("{} {}\n", hoa(i), coa(i)));
    }
    std::fs::write(&file, text)?;
    let t = Instant::now();
    d.cli(&["binding", "load", file.to_str().context("path")?])?;
    let load_s = t.elapsed().as_secs_f64();
    let bound = stat(&d.stats()?, &["bindings"]);
    anyhow::ensure!(bound == n as u64, "{bound} bound, not {n}");
    let rss1 = rss_kib(d.process.pid())?;
    d.process.kill()?;
    let start = time_restart(&mut d, bound)?;
    let rss2 = rss_kib(d.process.pid())?;
    let (e, f) = (empty[1].as_secs_f64(), start.as_secs_f64());
    report.push(format!(
        "7. scale, {n} static bindings: loaded in {load_s:.1} s ({:.0}/s); daemon RSS {rss0} → {rss1} KiB ({:.0} bytes per binding; {rss2} KiB after the restart); kernel maps {:.1} MiB for 1,048,576 binding slots ({:.0} bytes per slot, preallocated); start-up after SIGKILL with all {n}: {f:.2} s (an empty cache: {e:.2} s)",
        n as f64 / load_s,
        (rss1 - rss0) as f64 * 1024.0 / n as f64,
        kernel as f64 / 1048576.0,
        kernel as f64 / (1u64 << 20) as f64,
    ));
    report.set(
        "scale",
        serde_json::json!({"bindings": n, "load_s": load_s, "rss_kib": [rss0, rss1, rss2], "kernel_map_bytes": kernel, "start_s": f, "empty_start_s": e}),
    );
    Ok(())
}

/// Scenario 8, metrics: the time and size of one scrape of `/metrics` with a cache of `n`
/// static bindings, for per-binding series capped at 0, at the default 1,000 and at all of
/// them (one daemon per cap, the median of 5 scrapes by curl, side by side in one run).
fn metrics_scrape(lab: &Lab, _p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let n: u32 = if crate::quick() { 20_000 } else { 100_000 };
    step(&format!(
        "8. metrics: one scrape with {n} bindings, per-binding series capped"
    ));
    let coa = |i: u32| Ipv6Addr::from(u128::from(a("2001:db8:f00d::1:0")) + i as u128);
    let dir = tests::TempDir::new("metrics")?;
    let file = dir.join("bindings.txt");
    let mut text = String::with_capacity(n as usize * 64);
    for i in 0..n {
        text.push_str(&format!("{} {}\n", hoa(i), coa(i)));
    }
    std::fs::write(&file, text)?;
    let mut rows = Vec::new();
    for cap in [0, 1000, n] {
        let conf = format!(
            "{}\n[metrics]\nlisten = \"[::1]:9725\"\nmax_binding_series = {cap}\n",
            config("allow", false, 262_144, true)
        );
        let d = Hagent::start(&lab.ha, &conf)?;
        d.cli(&["binding", "load", file.to_str().context("path")?])?;
        let mut times = Vec::new();
        let mut size = 0.0;
        for _ in 0..5 {
            let out = lab
                .ha
                .command("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "60",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_total} %{size_download}",
                ])
                .args([
                    "-H",
                    "Accept: application/openmetrics-text",
                    "http://[::1]:9725/metrics",
                ])
                .output()?;
            anyhow::ensure!(out.status.success(), "curl: {out:?}");
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            let mut w = said
                .split_whitespace()
                .map(|x| x.parse::<f64>().unwrap_or(0.0));
            times.push(w.next().unwrap_or(0.0));
            size = w.next().unwrap_or(0.0);
        }
        times.sort_by(f64::total_cmp);
        rows.push((cap, crate::throughput::median(&times), size));
    }
    let base = rows[0].1;
    let text: Vec<String> = rows
        .iter()
        .map(|(cap, t, size)| {
            format!(
                "cap {cap}: {:.1} ms, {:.0} KiB (×{:.1})",
                t * 1e3,
                size / 1024.0,
                t / base
            )
        })
        .collect();
    report.push(format!(
        "8. metrics, {n} bindings, one scrape: {}",
        text.join("; ")
    ));
    report.set(
        "metrics",
        serde_json::json!(
            rows.iter()
                .map(|(cap, t, size)| serde_json::json!({"cap": cap, "scrape_s": t, "bytes": size}))
                .collect::<Vec<_>>()
        ),
    );
    Ok(())
}

/// Starts `d` again (it was killed) and returns the time until it answers with `n` bindings.
fn time_restart(d: &mut Hagent, n: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    d.restart(None)?;
    tests::wait_for("the bindings to be back", Duration::from_secs(60), || {
        Ok((stat(&d.stats()?, &["bindings"]) == n).then_some(()))
    })?;
    Ok(t.elapsed())
}

fn restart(lab: &Lab, p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let (n, gen_if) = (p.n, lab.gen_if);
    step(&format!("5. restart with {n} bindings"));
    let mut d = Hagent::start(&lab.ha, &config("allow", false, 262_144, true))?;
    // The baseline: the same daemon starting with an empty cache (three times, the median).
    let mut empty = Vec::new();
    for _ in 0..3 {
        d.process.kill()?;
        empty.push(time_restart(&mut d, 0)?);
    }
    empty.sort();
    let hoas: Vec<Ipv6Addr> = (0..n).map(hoa).collect();
    lab.gen_ns.run_in(move || -> anyhow::Result<()> {
        let g = Gen::new(a(HA), Some(gen_if))?;
        phase(&g, a(GEN_COA), &hoas, 7, Duration::from_secs(600))?;
        Ok(())
    })??;
    let bound = stat(&d.stats()?, &["bindings"]);
    let mut full = Vec::new();
    for _ in 0..3 {
        d.process.kill()?;
        full.push(time_restart(&mut d, bound)?);
    }
    full.sort();
    // A replay of the registrations' sequence number after the restarts: 135 for every one.
    let replay: Vec<Ipv6Addr> = (0..1000.min(n)).map(hoa).collect();
    let before = stat(
        &d.stats()?,
        &["home_agent", "registrations", "refused", "135"],
    );
    lab.gen_ns.run_in(move || -> anyhow::Result<()> {
        let g = Gen::new(a(HA), Some(gen_if))?;
        for h in &replay {
            while !g.send(&bu_packet(a(GEN_COA), a(HA), *h, 7, 100)) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    })??;
    let refused = tests::wait_for("the replays refused", Duration::from_secs(30), || {
        let r = stat(
            &d.stats()?,
            &["home_agent", "registrations", "refused", "135"],
        ) - before;
        Ok((r >= 1000.min(n) as u64).then_some(r))
    })?;
    let (e, f) = (empty[1].as_secs_f64(), full[1].as_secs_f64());
    report.push(format!(
        "5. restart after SIGKILL: {bound} bindings restored and reconciled in {f:.2} s (median of 3; target < 2 s); the same daemon with an empty cache: {e:.2} s; restoring costs {:.2} s ({:.1} µs per binding, ×{:.2} of the empty start); {refused} replayed BUs after it: all 135",
        f - e,
        (f - e) * 1e6 / bound.max(1) as f64,
        f / e
    ));
    Ok(())
}

fn dad_off(lab: &Lab, p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let (n, gen_if) = (p.n, lab.gen_if);
    // 1. DAD off.
    step(&format!("1. {n} new registrations, DAD off"));
    let d = Hagent::start(&lab.ha, &config("allow", false, 262_144, true))?;
    let pid = d.process.pid();
    let (objects0, rss0) = (kernel_objects(&lab.ha)?, rss_kib(pid)?);
    let s0 = d.stats()?;
    let warm: Vec<Ipv6Addr> = (0..1000).map(hoa).collect();
    let batch_1k: Vec<Ipv6Addr> = (1000..11_000).map(hoa).collect();
    let fill: Vec<Ipv6Addr> = (11_000..n.max(20_000)).map(hoa).collect();
    let batch_big: Vec<Ipv6Addr> = (n.max(20_000)..n.max(20_000) + 10_000).map(hoa).collect();
    let (t_1k, t_fill, t_big, t_refresh, growth) = lab.gen_ns.run_in({
        let (warm, batch_1k, fill, batch_big) = (
            warm.clone(),
            batch_1k.clone(),
            fill.clone(),
            batch_big.clone(),
        );
        move || -> anyhow::Result<_> {
            let g = Gen::new(a(HA), Some(gen_if))?;
            let coa = a(GEN_COA);
            phase(&g, coa, &warm, 1, Duration::from_secs(60))?;
            let t_1k = phase(&g, coa, &batch_1k, 1, Duration::from_secs(120))?;
            // The fill in steps of 10,000: new registrations, then a refresh of the same
            // 10,000, as the cache grows (the growth plot).
            let mut t_fill = Duration::ZERO;
            let mut growth = Vec::new();
            for (i, chunk) in fill.chunks(10_000).enumerate() {
                let bound = 11_000 + i * 10_000;
                let t_new = phase(&g, coa, chunk, 1, Duration::from_secs(300))?;
                t_fill += t_new;
                let t_ref = phase(&g, coa, chunk, 2, Duration::from_secs(300))?;
                growth.push(serde_json::json!({
                    "bound": bound,
                    "new_per_s": chunk.len() as f64 / t_new.as_secs_f64(),
                    "refresh_per_s": chunk.len() as f64 / t_ref.as_secs_f64(),
                }));
            }
            let t_big = phase(&g, coa, &batch_big, 1, Duration::from_secs(120))?;
            let all: Vec<Ipv6Addr> = warm
                .iter()
                .chain(&batch_1k)
                .chain(&fill)
                .chain(&batch_big)
                .copied()
                .collect();
            let t_refresh = phase(&g, coa, &all, 3, Duration::from_secs(600))?;
            Ok((t_1k, t_fill, t_big, t_refresh, growth))
        }
    })??;
    report.set("growth", serde_json::json!(growth));
    let s1 = d.stats()?;
    let bound = stat(&s1, &["bindings"]);
    let (objects1, rss1) = (kernel_objects(&lab.ha)?, rss_kib(pid)?);
    let requests = stat(&s1, &["rtnetlink_requests"]) - stat(&s0, &["rtnetlink_requests"]);
    let rate = |k: usize, t: Duration| k as f64 / t.as_secs_f64();
    let (r1k, rbig) = (rate(batch_1k.len(), t_1k), rate(batch_big.len(), t_big));
    report.push(format!(
        "1. DAD off: 10,000 new with 1,000 bound: {r1k:.0}/s; {} new: {:.0}/s; 10,000 new with {} bound: {rbig:.0}/s (÷ {:.2} of the rate at 1,000; target within 1.2×)",
        fill.len(),
        rate(fill.len(), t_fill),
        fill.len() + 11_000,
        r1k / rbig
    ));
    report.push(format!(
        "   the daemon dropped {} BUs from full queues (the generator resends after 1.5 s)",
        stat(&s1, &["home_agent", "dropped_queue_full"])
    ));
    report.push(format!(
        "   {} refreshes in {:.2} s: {:.0} BU/s (target ≥ 50,000)",
        bound,
        t_refresh.as_secs_f64(),
        rate(bound as usize, t_refresh)
    ));
    report.push(format!(
        "   kernel per binding: {requests} rtnetlink requests for {bound} bindings ({:.4} each; target 0), kernel objects {objects0} → {objects1}; daemon RSS {} → {} KiB ({:.0} bytes per binding)",
        requests as f64 / bound as f64,
        rss0,
        rss1,
        (rss1 - rss0) as f64 * 1024.0 / bound as f64
    ));
    drop(d);

    Ok(())
}

fn dad_on(lab: &Lab, p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let (n, gen_if) = (p.n, lab.gen_if);
    // 2. DAD on.
    step(&format!("2. {n} new registrations, DAD on"));
    let d = Hagent::start(&lab.ha, &config("allow", true, 262_144, true))?;
    let hoas: Vec<Ipv6Addr> = (0..n).map(hoa).collect();
    let t = lab.gen_ns.run_in(move || -> anyhow::Result<Duration> {
        let g = Gen::new(a(HA), Some(gen_if))?;
        phase(&g, a(GEN_COA), &hoas, 1, Duration::from_secs(600))
    })??;
    let s = d.stats()?;
    report.push(format!(
        "2. DAD on: {n} new in {:.2} s: {:.0}/s (target < 20 s); DAD probes sent {}, queue drops {}",
        t.as_secs_f64(),
        n as f64 / t.as_secs_f64(),
        stat(&s, &["home_agent", "registrations", "created"]),
        stat(&s, &["home_agent", "dropped_queue_full"])
    ));
    drop(d);

    Ok(())
}

fn flood_deny(lab: &Lab, p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let (flood_s, mn_if) = (p.flood_s, lab.mn_if);
    // 3. Flood under deny.
    step(&format!(
        "3. a {flood_s} s flood of new HoAs under deny, one ACL'd mobile node"
    ));
    let d = Hagent::start(&lab.ha, &config("deny", true, 1 << 20, false))?;
    let pid = d.process.pid();
    let rss0 = rss_kib(pid)?;
    let flood = Flood::start(
        &lab.gen_ns,
        a(GEN_COA),
        a(HA),
        a("2001:db8:bee5::"),
        Duration::from_secs(flood_s + 15),
        u64::MAX,
    )?;
    let mn = lab
        .mn
        .spawn_thread(move || -> anyhow::Result<Vec<Option<f64>>> {
            let g = Gen::new(a(HA), Some(mn_if))?;
            let mut out = Vec::new();
            let mut got = Vec::new();
            for i in 0..flood_s {
                let t = Instant::now();
                let seq = 100 + i as u16;
                g.send(&bu_packet(a(MN_COA), a(HA), a(MN_HOA), seq, 100));
                let mut answered = None;
                // The first try is a new registration: it waits for DAD (1 s).
                let wait = Duration::from_secs(if i == 0 { 3 } else { 1 });
                while t.elapsed() < wait {
                    got.clear();
                    g.drain(&mut got);
                    if got
                        .iter()
                        .any(|(h, s, q)| *h == a(MN_HOA) && *s == 0 && *q == seq)
                    {
                        answered = Some(t.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                out.push(answered);
                if let Some(left) = Duration::from_secs(1).checked_sub(t.elapsed()) {
                    std::thread::sleep(left);
                }
            }
            Ok(out)
        })?;
    let (mut cli, mut api) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(flood_s) {
        std::thread::sleep(Duration::from_millis(1000));
        cli.push(cli_ms(&d, &["bindings"])?);
        let t = Instant::now();
        hagent::control::call(
            &d.socket,
            &hagent::control::Request::Bindings {
                after: None,
                limit: None,
            },
        )?;
        api.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let tries = mn
        .join()
        .map_err(|_| anyhow::anyhow!("the MN thread panicked"))??;
    let rss1 = rss_kib(pid)?;
    let s = d.stats()?;
    let sent = flood.sent();
    let t = Instant::now();
    let status = d.stop()?;
    let stop_s = t.elapsed().as_secs_f64();
    drop(flood);
    let first = tries.first().copied().flatten();
    let answered: Vec<f64> = tries.iter().skip(1).flatten().copied().collect();
    let worst = answered.iter().copied().fold(0.0, f64::max);
    let cli_worst = cli.iter().copied().fold(0.0, f64::max);
    let api_worst = api.iter().copied().fold(0.0, f64::max);
    report.push(format!(
        "3. flood under deny: {sent} BUs in {flood_s} s ({:.0}/s) reached {} at the daemon; the ACL's MN registered in {} ms (DAD included), then its BU was answered at {} of {} tries (worst {worst:.1} ms; target every try within 1 s); `hagent bindings` worst {cli_worst:.1} ms, of which the control socket's round trip worst {api_worst:.1} ms (target < 100 ms); RSS {rss0} → {rss1} KiB (+{} KiB; target ≤ 64 MiB); SIGTERM → exit in {stop_s:.2} s ({status}; target < 2 s)",
        sent as f64 / flood_s as f64,
        stat(&s, &["signalling", "bu_received"]),
        first.map_or("no answer".to_string(), |ms| format!("{ms:.0}")),
        answered.len(),
        tries.len().saturating_sub(1),
        rss1.saturating_sub(rss0)
    ));
    report.push(format!(
        "   the MN's tries, ms to the BA of each: {:?}",
        tries
            .iter()
            .map(|t| t.map(|ms| (ms * 10.0).round() / 10.0))
            .collect::<Vec<_>>()
    ));
    report.push(format!(
        "   turned away: {}",
        s["home_agent"]["registrations"]
    ));
    let left = Command::new("ip")
        .args(["-n", lab.ha.name(), "-6", "route", "show", "proto", "0xa6"])
        .output()?;
    report.push(format!(
        "   after SIGTERM: {} routes of ours, {} proxy entries",
        String::from_utf8_lossy(&left.stdout).lines().count(),
        String::from_utf8(lab.ha.ip(&["-6", "neigh", "show", "proxy"])?.stdout)?
            .lines()
            .count()
    ));

    Ok(())
}

fn flood_allow(lab: &Lab, p: &Params, report: &mut Report) -> anyhow::Result<()> {
    let (flood_s, mn_if) = (p.flood_s, lab.mn_if);
    // 4. Flood under allow, 100k cache.
    step(&format!(
        "4. a {flood_s} s flood of new HoAs under allow into a 100,000-binding cache"
    ));
    let d = Hagent::start(&lab.ha, &config("allow", true, 100_000, true))?;
    let pid = d.process.pid();
    let refresh: Vec<Ipv6Addr> = (0..100)
        .map(|i| Ipv6Addr::from(u128::from(a("2001:db8:bee5::2:0:0")) + i))
        .collect();
    let r = refresh.clone();
    lab.mn.run_in(move || -> anyhow::Result<()> {
        let g = Gen::new(a(HA), Some(mn_if))?;
        phase(&g, a(MN_COA), &r, 1, Duration::from_secs(30)).map(|_| ())
    })??;
    let rss0 = rss_kib(pid)?;
    let flood = Flood::start(
        &lab.gen_ns,
        a(GEN_COA),
        a(HA),
        a("2001:db8:bee5::"),
        Duration::from_secs(flood_s),
        u64::MAX,
    )?;
    let r = refresh.clone();
    let mn = lab.mn.spawn_thread(move || -> anyhow::Result<(u32, u32)> {
        let g = Gen::new(a(HA), Some(mn_if))?;
        let (mut ok, mut tries) = (0, 0);
        for i in 0..flood_s.saturating_sub(2) {
            tries += 1;
            if phase(&g, a(MN_COA), &r, 2 + i as u16, Duration::from_secs(2)).is_ok() {
                ok += 1;
            }
        }
        Ok((ok, tries))
    })?;
    let mut dad_max = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(flood_s) {
        std::thread::sleep(Duration::from_millis(500));
        dad_max = dad_max.max(stat(&d.stats()?, &["home_agent", "dad_probes"]));
    }
    let (ok, tries) = mn
        .join()
        .map_err(|_| anyhow::anyhow!("the MN thread panicked"))??;
    let sent = flood.finish()?;
    let s = d.stats()?;
    let rss1 = rss_kib(pid)?;
    let bound = stat(&s, &["bindings"]);
    report.push(format!(
        "4. flood under allow: {sent} BUs; {bound} bindings (cap 100,000), {} answered 130 (no DAD for them; probes in flight at most {dad_max}), {} removed (target 0); the MN's 100 refreshes answered in {ok} of {tries} rounds; RSS {rss0} → {rss1} KiB ({:.0} bytes per binding; target ≤ 100 MiB + 1 KiB per binding)",
        stat(&s, &["home_agent", "registrations", "refused", "130"]),
        stat(&s, &["home_agent", "registrations", "removed"]),
        (rss1.saturating_sub(rss0)) as f64 * 1024.0 / bound.max(1) as f64
    ));
    drop(d);

    Ok(())
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    let quick = crate::quick();
    let n: u32 = std::env::var("HAGENT_BENCH_MNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 100_000 });
    let flood_s: u64 = std::env::var("HAGENT_BENCH_FLOOD_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 3 } else { 30 });
    // HAGENT_BENCH_SCENARIOS=3,4 runs some of them.
    let only: Vec<String> = std::env::var("HAGENT_BENCH_SCENARIOS")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    let lab = lab()?;
    let mut report = Report::default();
    let scenarios: [(&str, Scenario); 8] = [
        ("1", dad_off),
        ("2", dad_on),
        ("3", flood_deny),
        ("4", flood_allow),
        ("5", restart),
        ("6", static_bulk),
        ("7", scale),
        ("8", metrics_scrape),
    ];
    for (name, f) in scenarios {
        if only.is_empty() || only.iter().any(|o| o == name) {
            f(&lab, &Params { n, flood_s }, &mut report)?;
        }
    }

    println!();
    println!(
        "Binding Updates end to end (generator → XDP → daemon → BA), one daemon event loop, 2-core VM"
    );
    for line in &report.lines {
        println!("{line}");
    }
    report.set("lines", serde_json::json!(report.lines));
    Ok(serde_json::Value::Object(report.data))
}
