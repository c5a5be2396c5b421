//! The benchmarks' report: machine facts and date next to the numbers, written as JSON, and
//! the plots drawn from it. A full run writes to `docs/bench/` (what `docs/BENCHMARKS.md`
//! shows, so one command reproduces it); `--quick` writes to `target/bench/` only.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::{
    plot::{Axis, Series, lines},
    quick,
};

/// Kernel, CPU model, cores and the date.
pub fn machine() -> anyhow::Result<Value> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = String::from_utf8(
        std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();
    Ok(json!({
        "machine": {"kernel": kernel, "cpu": cpu, "cores": cores, "date": date, "quick": quick()},
    }))
}

/// Where a report and its plots go: `docs/bench/` for a full run's, `target/bench/` for a
/// quick one's (the report says which it is).
fn out_dir(report: &Value) -> PathBuf {
    let root = tests::workspace_root();
    if report["machine"]["quick"].as_bool().unwrap_or(true) {
        root.join("target/bench")
    } else {
        root.join("docs/bench")
    }
}

/// Writes `results-<suite>.json` and the plots the report holds data for.
pub fn write(suite: &str, report: &Value) -> anyhow::Result<()> {
    let dir = out_dir(report);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("results-{suite}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    println!("wrote {}", path.display());
    plots(report)
}

/// Draws the plots `report` holds data for, next to its results.
pub fn plots(report: &Value) -> anyhow::Result<()> {
    let dir = out_dir(report);
    std::fs::create_dir_all(&dir)?;
    let m = &report["machine"];
    let facts = format!(
        "{}, {} cores, {}, {}",
        m["cpu"].as_str().unwrap_or(""),
        m["cores"],
        m["kernel"].as_str().unwrap_or(""),
        m["date"].as_str().unwrap_or("")
    );
    let mut written = Vec::new();
    if let Some(t) = report.get("throughput") {
        for (dir_key, title) in [
            ("down", "Downlink (encapsulation)"),
            ("up", "Uplink (decapsulation)"),
        ] {
            let series: Vec<Series> = crate::throughput::Dut::ALL
                .iter()
                .filter_map(|d| {
                    let points = t["series"][format!("{}_{dir_key}", d.key())].as_array()?;
                    Some(Series {
                        name: d.name().to_string(),
                        points: points
                            .iter()
                            .filter_map(|p| Some((p["size"].as_f64()?, p["pps"].as_f64()? / 1e6)))
                            .collect(),
                    })
                })
                .collect();
            let path = dir.join(format!("throughput-{dir_key}.png"));
            lines(
                &path,
                &format!("{title}: packets/s through the DUT, one core"),
                &facts,
                "inner IPv6 packet size (bytes)",
                "million packets/s",
                Axis::Linear,
                &series,
            )?;
            written.push(path);
        }
    }
    if let Some(d) = report.get("dataplane") {
        let cols = d["columns"].as_array().cloned().unwrap_or_default();
        let mut series = Vec::new();
        for (case, label) in [(2usize, "encap"), (3, "decap"), (1, "minimal router")] {
            for cache in [true, false] {
                if case == 1 && cache {
                    continue;
                }
                let points = cols
                    .iter()
                    .filter(|c| c["cache"] == cache)
                    .filter_map(|c| Some((c["bindings"].as_f64()?, c["ns"][case].as_f64()?)))
                    .collect();
                series.push(Series {
                    name: format!(
                        "{label}{}",
                        if case == 1 {
                            ", FIB per packet".to_string()
                        } else if cache {
                            ", next-hop cache".to_string()
                        } else {
                            ", FIB per packet".to_string()
                        }
                    ),
                    points,
                });
            }
        }
        let path = dir.join("cost-vs-bindings.png");
        lines(
            &path,
            "XDP cost per packet (BPF_PROG_TEST_RUN)",
            &facts,
            "bindings in the cache",
            "ns per packet",
            Axis::Log,
            &series,
        )?;
        written.push(path);
    }
    if let Some(growth) = report
        .get("signalling")
        .and_then(|s| s["growth"].as_array())
        .filter(|g| !g.is_empty())
    {
        let pick = |k: &str| -> Vec<(f64, f64)> {
            growth
                .iter()
                .filter_map(|p| Some((p["bound"].as_f64()?, p[k].as_f64()?)))
                .collect()
        };
        let path = dir.join("bu-vs-bindings.png");
        lines(
            &path,
            "Binding Updates per second as the cache grows",
            &facts,
            "bindings in the cache",
            "BU/s (each answered by a BA)",
            Axis::Linear,
            &[
                Series {
                    name: "new registrations, DAD off".into(),
                    points: pick("new_per_s"),
                },
                Series {
                    name: "refreshes".into(),
                    points: pick("refresh_per_s"),
                },
            ],
        )?;
        written.push(path);
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
