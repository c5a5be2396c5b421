//! `cargo xtask bench dataplane`: per-packet cost of the XDP programs under
//! BPF_PROG_TEST_RUN, measured side by side in one run with two references — an empty
//! XDP_PASS program and a minimal router (parse, `bpf_fib_lookup`, MAC rewrite) — with 1 and
//! with 1,000,000 bindings, with the next-hop cache on and off.
//!
//! Non-live TestRun with `repeat` runs the program again on its own output; the programs are
//! loaded with `bench_restore` so each run undoes its change, and each measurement checks
//! that the counter of the expected path moved by exactly `repeat` (every run took that path)
//! and that the output equals the input (the restore worked).

use std::net::Ipv6Addr;

use anyhow::Context as _;

mod plot;
mod report;
mod restart;
mod signalling;
mod throughput;

use aya::programs::{TestRun, TestRunOptions};
use ha_common::{abi::BindingEntry, programs};
use hagent::dataplane::{Dataplane, DataplaneOptions, Role};
use tests::{
    packet::{Mac, addr, eth, ipv6, pattern, udp},
    step,
    topology::seed,
};

const HA_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
/// `HAGENT_BENCH_QUICK=1` (`cargo xtask bench --quick`): every suite with small counts, to
/// prove it runs (CI); its numbers are not the figures.
pub fn quick() -> bool {
    std::env::var_os("HAGENT_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// TestRun repetitions per measurement.
fn repeat() -> u32 {
    if quick() { 10_000 } else { 200_000 }
}

/// Measurements per case (the median is reported).
fn rounds() -> usize {
    if quick() { 1 } else { 7 }
}

fn ha() -> Ipv6Addr {
    addr(seed::HA)
}
fn hoa() -> Ipv6Addr {
    addr(seed::HOA)
}
fn coa() -> Ipv6Addr {
    addr(seed::COA)
}
fn cn() -> Ipv6Addr {
    addr(seed::CN)
}

struct Case {
    name: &'static str,
    program: &'static str,
    frame: Vec<u8>,
    /// XDP action every run must return.
    action: u32,
    /// Global counter that must move by `repeat` (None for the reference programs).
    counter: Option<&'static str>,
}

fn frames() -> Vec<Case> {
    let mut down = eth(HA_MAC, PEER_MAC);
    down.extend(ipv6(
        0,
        1,
        17,
        64,
        cn(),
        hoa(),
        &udp(cn(), hoa(), 1, 2, &pattern(18)),
    ));
    let inner = ipv6(
        0,
        1,
        17,
        64,
        hoa(),
        cn(),
        &udp(hoa(), cn(), 2, 1, &pattern(18)),
    );
    let mut up = eth(HA_MAC, PEER_MAC);
    up.extend(ipv6(0, 0, 41, 64, coa(), ha(), &inner));
    let mut spoof = eth(HA_MAC, PEER_MAC);
    spoof.extend(ipv6(0, 0, 41, 64, addr("2001:db8:f00d::bad"), ha(), &inner));
    let mut plain = eth(HA_MAC, PEER_MAC);
    let other = addr("2001:db8:cafe::99");
    plain.extend(ipv6(
        0,
        1,
        17,
        64,
        cn(),
        other,
        &udp(cn(), other, 1, 2, &pattern(18)),
    ));
    vec![
        Case {
            name: "empty XDP_PASS program",
            program: programs::XDP_PASS,
            frame: down.clone(),
            action: 2,
            counter: None,
        },
        Case {
            name: "minimal router (reference)",
            program: programs::XDP_ROUTER,
            frame: plain.clone(),
            action: 3,
            counter: Some("decap_forward"),
        },
        Case {
            name: "encap (downlink to HoA)",
            program: programs::XDP_INGRESS,
            frame: down,
            action: 3,
            counter: Some("encap_tx"),
        },
        Case {
            name: "decap (reverse tunnel)",
            program: programs::XDP_INGRESS,
            frame: up,
            action: 3,
            counter: Some("decap_forward"),
        },
        Case {
            name: "pass (unbound destination)",
            program: programs::XDP_INGRESS,
            frame: plain,
            action: 2,
            counter: Some("pass_no_binding"),
        },
        Case {
            name: "drop (spoofed reverse tunnel)",
            program: programs::XDP_INGRESS,
            frame: spoof,
            action: 1,
            counter: Some("drop_decap_wrong_care_of"),
        },
    ]
}

/// The `i`th mobile network prefix of the scale runs (a /64).
fn mnp(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(addr("2001:db8:77::")) + ((i as u128) << 64))
}

fn counter(dp: &Dataplane, name: &str) -> u64 {
    dp.counters()
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.packets)
        .unwrap()
}

/// Median ns per packet of `case` over `rounds()` runs of `repeat()`.
fn measure(dp: &mut Dataplane, ifindex: u32, case: &Case) -> anyhow::Result<f64> {
    measure_rounds(dp, ifindex, case, rounds())
}

/// ns per packet of `case`: the median of `rounds` runs of `repeat()`.
fn measure_rounds(
    dp: &mut Dataplane,
    ifindex: u32,
    case: &Case,
    rounds: usize,
) -> anyhow::Result<f64> {
    let mut ctx = Vec::with_capacity(24);
    for v in [0u32, case.frame.len() as u32, 0, ifindex, 0, 0] {
        ctx.extend_from_slice(&v.to_ne_bytes());
    }
    let mut samples = Vec::new();
    let repeat = repeat();
    for _ in 0..rounds {
        let before = case.counter.map(|c| counter(dp, c));
        let mut out = vec![0u8; 4096];
        let program = if case.program == programs::XDP_INGRESS {
            dp.xdp()?
        } else {
            dp.reference(case.program)?
        };
        let r = program.test_run(TestRunOptions {
            data_in: Some(&case.frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        })?;
        anyhow::ensure!(
            r.return_value == case.action,
            "{}: action {} instead of {}",
            case.name,
            r.return_value,
            case.action
        );
        out.truncate(r.data_size_out as usize);
        anyhow::ensure!(
            out == case.frame,
            "{}: the program did not restore the packet",
            case.name
        );
        if let (Some(name), Some(before)) = (case.counter, before) {
            let moved = counter(dp, name) - before;
            anyhow::ensure!(
                moved == repeat as u64,
                "{}: {name} moved {moved}, not {repeat}: not every run took the path",
                case.name
            );
        }
        samples.push(r.duration.as_nanos() as f64);
    }
    middle(samples, |x| *x).context("no rounds")
}

/// The middle of `v` by `key` (the upper of the two middle ones for an even count); None when
/// `v` is empty. Every median the benchmarks report.
pub fn middle<T: Copy>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v.get(v.len() / 2).copied()
}

fn load(cache: bool, bindings: u32, prefixes: u32, ifindex: u32) -> anyhow::Result<Dataplane> {
    let mut dp = Dataplane::load(&DataplaneOptions {
        role: Role::HomeAgent,
        max_bindings: bindings.max(1024),
        max_prefixes: prefixes.max(1024),
        nexthop_cache: cache,
        bench_restore: true,
        ..Default::default()
    })?;
    dp.add_local_address(ha())?;
    dp.allow_redirect(ifindex)?;
    let entry = |id| BindingEntry {
        local: ha().octets(),
        remote: coa().octets(),
        flags: 0,
        binding_id: id,
        home_ifindex: 0,
        _pad: 0,
    };
    dp.set_binding(hoa(), &entry(0))?;
    // Fill the cache with other HoAs (in 2001:db8:1::/48, away from the ones we send to).
    let base = u128::from(addr("2001:db8:1::"));
    for i in 1..bindings {
        dp.set_binding(Ipv6Addr::from(base + i as u128), &entry(i))?;
    }
    // Mobile network prefixes 2001:db8:77:<i>::/64; the MNP case sends into the last one.
    for i in 0..prefixes {
        dp.set_prefix(mnp(i), 64, &entry((bindings + i) % bindings.max(1024)))?;
    }
    Ok(dp)
}

fn main() -> anyhow::Result<()> {
    let suite = std::env::args().nth(1).unwrap_or_default();
    let mut report = report::machine()?;
    match suite.as_str() {
        "dataplane" => report["dataplane"] = dataplane()?,
        "throughput" => report["throughput"] = throughput::run()?,
        "signalling" => report["signalling"] = signalling::run()?,
        "restart" => restart::run()?,
        "all" => {
            report["dataplane"] = dataplane()?;
            report["throughput"] = throughput::run()?;
            report["signalling"] = signalling::run()?;
            restart::run()?;
        }
        // Redraws the plots of a full run's results (docs/bench/results-all.json).
        "plot" => {
            let path = tests::workspace_root().join("docs/bench/results-all.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            return report::plots(&serde_json::from_str(&text)?);
        }
        _ => anyhow::bail!("usage: bench dataplane|throughput|signalling|restart|all|plot"),
    }
    report::write(&suite, &report)
}

/// Binding counts of the scale runs.
fn binding_counts() -> Vec<u32> {
    if quick() {
        vec![1, 1000, 10_000]
    } else {
        vec![1, 1000, 100_000, 1_000_000]
    }
}

/// Mobile network prefixes of the MNP run.
fn prefix_count() -> u32 {
    if quick() { 1000 } else { 10_000 }
}

/// Bytes of kernel memory the data plane's maps hold.
fn map_memory(dp: &mut Dataplane) -> anyhow::Result<u64> {
    program_map_memory(dp.xdp()?.info()?.id())
}

/// Bytes of kernel memory (`memlock`, from the kernel's fdinfo) of every map program `id`
/// uses.
pub fn program_map_memory(id: u32) -> anyhow::Result<u64> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .ok_or_else(|| anyhow::anyhow!("no program {id} loaded"))?;
    let mut total = 0;
    for map in program.map_ids()?.unwrap_or_default() {
        let fd = aya::maps::MapInfo::from_id(map)?.fd()?;
        let text =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))?;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// TC egress (what the node itself sends to a HoA) against XDP encapsulation, both timed one
/// run per call (the TC program has no restore mode, so `repeat` cannot be used): median ns.
fn tc_cost(dp: &mut Dataplane, ifindex: u32) -> anyhow::Result<(f64, f64)> {
    let mut frame = eth(PEER_MAC, HA_MAC);
    frame.extend(ipv6(
        0,
        1,
        17,
        64,
        ha(),
        hoa(),
        &udp(ha(), hoa(), 1, 2, &pattern(18)),
    ));
    let mut skb_ctx = vec![0u8; 192];
    skb_ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let xdp_case = &frames()[2];
    let mut xdp_ctx = Vec::with_capacity(24);
    for v in [0u32, xdp_case.frame.len() as u32, 0, ifindex, 0, 0] {
        xdp_ctx.extend_from_slice(&v.to_ne_bytes());
    }
    let n = if quick() { 500 } else { 20_000 };
    let (mut tc, mut xdp) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let before = counter(dp, "tc_encap");
    for _ in 0..n {
        let mut out = vec![0u8; 4096];
        let r = dp.tc()?.test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ctx_in: Some(&skb_ctx),
            ..Default::default()
        })?;
        anyhow::ensure!(
            r.return_value == 0 || r.return_value == 7,
            "TC encap returned {}",
            r.return_value
        );
        tc.push(r.duration.as_nanos() as f64);
        let mut out = vec![0u8; 4096];
        let r = dp.xdp()?.test_run(TestRunOptions {
            data_in: Some(&xdp_case.frame),
            data_out: Some(&mut out),
            ctx_in: Some(&xdp_ctx),
            ..Default::default()
        })?;
        anyhow::ensure!(r.return_value == 3, "XDP encap returned {}", r.return_value);
        xdp.push(r.duration.as_nanos() as f64);
    }
    let moved = counter(dp, "tc_encap") - before;
    anyhow::ensure!(moved == n as u64, "tc_encap moved {moved}, not {n}");
    let median = |v: Vec<f64>| middle(v, |x| *x).context("no runs");
    Ok((median(tc)?, median(xdp)?))
}

fn dataplane() -> anyhow::Result<serde_json::Value> {
    step("building a private namespace with routes and permanent neighbours");
    let (ns, ifindex) = tests::topology::forwarding_namespace("bench")?;
    let report = ns.run_in(move || -> anyhow::Result<serde_json::Value> {
        let cases = frames();
        let counts = binding_counts();
        // Every data plane loaded at once, then measured in turns — round r of each (cache,
        // bindings) column and case before round r + 1 of any — so the machine's drift during
        // the run falls on all columns alike; the median of the rounds is reported.
        let mut planes: Vec<(bool, u32, Dataplane)> = Vec::new();
        for cache in [false, true] {
            for &n in &counts {
                step(&format!(
                    "next-hop cache {}, {n} binding(s): loading{}",
                    if cache { "on" } else { "off" },
                    if n > 100_000 { " (filling the map takes a few seconds)" } else { "" }
                ));
                planes.push((cache, n, load(cache, n, 0, ifindex)?));
            }
        }
        step(&format!("measuring {} rounds, in turns", rounds()));
        let mut samples = vec![vec![Vec::new(); cases.len()]; planes.len()];
        for _ in 0..rounds() {
            for (p, (_, _, dp)) in planes.iter_mut().enumerate() {
                for (i, case) in cases.iter().enumerate() {
                    samples[p][i].push(measure_rounds(dp, ifindex, case, 1)?);
                }
            }
        }
        let mut columns: Vec<(bool, u32, Vec<f64>)> = Vec::new();
        let mut memory: Vec<(u32, u64)> = Vec::new();
        for (p, (cache, n, dp)) in planes.iter_mut().enumerate() {
            let v = samples[p]
                .iter()
                .map(|s| middle(s.clone(), |x| *x).context("no rounds"))
                .collect::<anyhow::Result<_>>()?;
            columns.push((*cache, *n, v));
            if *cache {
                memory.push(((*n).max(1024), map_memory(dp)?));
            }
        }
        drop(planes);
        let p = prefix_count();
        step(&format!("next-hop cache on, 1 binding and {p} mobile network prefixes"));
        let mut dp = load(true, 1, p, ifindex)?;
        let dst = Ipv6Addr::from(u128::from(mnp(p - 1)) + 5);
        let mut f = eth(HA_MAC, PEER_MAC);
        f.extend(ipv6(0, 1, 17, 64, cn(), dst, &udp(cn(), dst, 1, 2, &pattern(18))));
        let mnp_case = Case {
            name: "encap to a mobile network prefix",
            program: programs::XDP_INGRESS,
            frame: f,
            action: 3,
            counter: Some("encap_tx"),
        };
        let with_prefixes = [
            measure(&mut dp, ifindex, &cases[2])?,
            measure(&mut dp, ifindex, &mnp_case)?,
        ];
        step("TC egress against XDP, one run per call");
        let mut dp = load(true, 1, 0, ifindex)?;
        let (tc, xdp) = tc_cost(&mut dp, ifindex)?;
        // The programs' size after the verifier (8 bytes per instruction), and how many
        // instructions it had to check.
        let size = |info: aya::programs::ProgramInfo| {
            serde_json::json!({
                "xlated_insns": info.size_translated().unwrap_or(0) / 8,
                "verified_insns": info.verified_instruction_count().unwrap_or(0),
            })
        };
        let sizes = serde_json::json!({
            "xdp": size(dp.xdp()?.info()?),
            "tc": size(dp.tc()?.info()?),
            "router": size(dp.reference(programs::XDP_ROUTER)?.info()?),
        });
        Ok(serde_json::json!({
            "cases": cases.iter().map(|c| c.name).collect::<Vec<_>>(),
            "columns": columns.iter().map(|(c, n, v)| serde_json::json!({"cache": c, "bindings": n, "ns": v})).collect::<Vec<_>>(),
            "memory": memory.iter().map(|(m, b)| serde_json::json!({"max_bindings": m, "bytes": b})).collect::<Vec<_>>(),
            "prefixes": p,
            "with_prefixes": {"encap_hoa_ns": with_prefixes[0], "encap_mnp_ns": with_prefixes[1]},
            "tc_encap_ns": tc, "xdp_encap_single_ns": xdp,
            "program_sizes": sizes,
        }))
    })??;
    print_dataplane(&report);
    Ok(report)
}

fn print_dataplane(r: &serde_json::Value) {
    let cases: Vec<&str> = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    let cols = r["columns"].as_array().unwrap();
    let ns = |cache: bool, n: u64, case: usize| -> f64 {
        cols.iter()
            .find(|c| c["cache"] == cache && c["bindings"] == n)
            .and_then(|c| c["ns"][case].as_f64())
            .unwrap_or(f64::NAN)
    };
    let counts: Vec<u64> = binding_counts().into_iter().map(u64::from).collect();
    let big = *counts.last().unwrap();
    println!();
    println!(
        "BPF_PROG_TEST_RUN, ns per packet (median of {} x {} runs), 64-byte-class frames{}",
        rounds(),
        repeat(),
        if quick() {
            " — QUICK MODE: not the figures"
        } else {
            ""
        }
    );
    for cache in [false, true] {
        println!(
            "\nnext-hop cache {} — bindings:",
            if cache {
                "on (the default)"
            } else {
                "off (a FIB lookup per packet)"
            }
        );
        print!("{:<34}", "program / path");
        for n in &counts {
            print!(" {:>10}", n);
        }
        println!("   {:>11} {:>12}", "÷ router", &format!("{big} ÷ 1"));
        for (i, name) in cases.iter().enumerate() {
            print!("{name:<34}");
            for &n in &counts {
                print!(" {:>10.1}", ns(cache, n, i));
            }
            println!(
                "   {:>10.2}x {:>11.2}x",
                ns(cache, 1, i) / ns(false, 1, 1),
                ns(cache, big, i) / ns(cache, 1, i)
            );
        }
    }
    println!();
    println!(
        "targets: with the cache encap ÷ router (FIB per packet) {:.2}x (≤ 0.4x), decap {:.2}x (≤ 0.5x); {big} ÷ 1 binding encap {:.2}x, decap {:.2}x (≤ 1.1x)",
        ns(true, 1, 2) / ns(false, 1, 1),
        ns(true, 1, 3) / ns(false, 1, 1),
        ns(true, big, 2) / ns(true, 1, 2),
        ns(true, big, 3) / ns(true, 1, 3),
    );
    let wp = &r["with_prefixes"];
    println!(
        "with {} mobile network prefixes: encap to a HoA {:.1} ns, encap to an MNP {:.1} ns ({:.2}x the HoA)",
        r["prefixes"],
        wp["encap_hoa_ns"].as_f64().unwrap_or(0.0),
        wp["encap_mnp_ns"].as_f64().unwrap_or(0.0),
        wp["encap_mnp_ns"].as_f64().unwrap_or(0.0) / wp["encap_hoa_ns"].as_f64().unwrap_or(1.0),
    );
    println!(
        "TC egress encap (the node's own packets to a HoA) {:.0} ns against XDP encap {:.0} ns, one run per call ({:.2}x)",
        r["tc_encap_ns"].as_f64().unwrap_or(0.0),
        r["xdp_encap_single_ns"].as_f64().unwrap_or(0.0),
        r["tc_encap_ns"].as_f64().unwrap_or(0.0) / r["xdp_encap_single_ns"].as_f64().unwrap_or(1.0),
    );
    let ps = &r["program_sizes"];
    println!(
        "program size after the verifier (instructions, incl. every path): XDP {} (verified {}), TC {} (verified {}), the minimal router {}",
        ps["xdp"]["xlated_insns"],
        ps["xdp"]["verified_insns"],
        ps["tc"]["xlated_insns"],
        ps["tc"]["verified_insns"],
        ps["router"]["xlated_insns"],
    );
    let mem = r["memory"].as_array().unwrap();
    if let (Some(a), Some(b)) = (mem.first(), mem.last()) {
        let (ma, ba) = (
            a["max_bindings"].as_f64().unwrap(),
            a["bytes"].as_f64().unwrap(),
        );
        let (mb, bb) = (
            b["max_bindings"].as_f64().unwrap(),
            b["bytes"].as_f64().unwrap(),
        );
        println!(
            "kernel map memory: {:.1} MiB for {ma} binding slots, {:.1} MiB for {mb}: {:.0} bytes per binding slot (maps are sized by max_bindings, preallocated)",
            ba / 1048576.0,
            bb / 1048576.0,
            (bb - ba) / (mb - ma)
        );
    }
}
