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

mod restart;
mod signalling;

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
    if quick() { 1 } else { 5 }
}

/// The large binding count.
fn big() -> u32 {
    if quick() { 10_000 } else { 1_000_000 }
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
    let mut ctx = Vec::with_capacity(24);
    for v in [0u32, case.frame.len() as u32, 0, ifindex, 0, 0] {
        ctx.extend_from_slice(&v.to_ne_bytes());
    }
    let mut samples = Vec::new();
    let (rounds, repeat) = (rounds(), repeat());
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
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(samples[rounds / 2])
}

fn load(cache: bool, bindings: u32, ifindex: u32) -> anyhow::Result<Dataplane> {
    let mut dp = Dataplane::load(&DataplaneOptions {
        role: Role::HomeAgent,
        max_bindings: bindings.max(1024),
        max_prefixes: 1024,
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
    Ok(dp)
}

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("dataplane") => dataplane(),
        Some("signalling") => signalling::run(),
        Some("restart") => restart::run(),
        Some("all") => {
            dataplane()?;
            signalling::run()?;
            restart::run()
        }
        _ => anyhow::bail!("usage: bench dataplane|signalling|restart|all"),
    }
}

fn dataplane() -> anyhow::Result<()> {
    step("building a private namespace with routes and permanent neighbours");
    let (ns, ifindex) = tests::topology::forwarding_namespace("bench")?;
    let rows = ns.run_in(move || -> anyhow::Result<Vec<(String, [f64; 4])>> {
        let cases = frames();
        let mut table: Vec<(String, [f64; 4])> = cases
            .iter()
            .map(|c| (c.name.to_string(), [0.0; 4]))
            .collect();
        for (col, (cache, bindings)) in [(false, 1u32), (false, big()), (true, 1), (true, big())]
            .into_iter()
            .enumerate()
        {
            step(&format!(
                "next-hop cache {}, {bindings} binding(s): loading{}",
                if cache { "on" } else { "off" },
                if bindings > 1 {
                    " (filling the map takes a few seconds)"
                } else {
                    ""
                }
            ));
            let mut dp = load(cache, bindings, ifindex)?;
            for (i, case) in cases.iter().enumerate() {
                table[i].1[col] = measure(&mut dp, ifindex, case)?;
            }
        }
        Ok(table)
    })??;

    let empty = rows[0].1;
    let router = rows[1].1;
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
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10}   {:>13} {:>13}",
        "program / path",
        "FIB, 1 b",
        &format!("FIB, {} b", big()),
        "cache, 1 b",
        &format!("cache, {} b", big()),
        "FIB÷router",
        "cache÷empty"
    );
    for (name, v) in &rows {
        println!(
            "{:<32} {:>10.1} {:>10.1} {:>10.1} {:>10.1}   {:>12.2}x {:>12.2}x",
            name,
            v[0],
            v[1],
            v[2],
            v[3],
            v[0] / router[0],
            v[2] / empty[2]
        );
    }
    println!();
    let enc = &rows[2].1;
    let dec = &rows[3].1;
    println!(
        "encap ÷ minimal router (FIB per packet): {:.2}x   decap ÷ router: {:.2}x   (target ≤ 1.2x)",
        enc[0] / router[0],
        dec[0] / router[0]
    );
    println!(
        "{} ÷ 1 binding: encap {:.2}x, decap {:.2}x with FIB; {:.2}x, {:.2}x with cache   (target ≤ 1.1x)",
        big(),
        enc[1] / enc[0],
        dec[1] / dec[0],
        enc[3] / enc[2],
        dec[3] / dec[2]
    );
    println!(
        "with the next-hop cache: encap ÷ router {:.2}x, decap ÷ router {:.2}x; encap ÷ empty {:.2}x",
        enc[2] / router[0],
        dec[2] / router[0],
        enc[2] / empty[2]
    );
    Ok(())
}
