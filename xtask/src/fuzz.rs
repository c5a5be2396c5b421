//! `cargo xtask fuzz`: the cargo-fuzz (libFuzzer) targets in `fuzz/`, whose bodies live in
//! `hagent::fuzzing`. Each run starts from the committed seeds (`fuzz/corpus/<target>`, read
//! only) and a dictionary when there is one, and keeps what it learns in a scratch corpus under
//! `target/fuzz-corpus`. A crash fails the run, leaves the input in `fuzz/artifacts/<target>/`,
//! and once fixed belongs in `fuzz/regressions/<target>/` — the unit tests replay those.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::{run, step};

/// The targets, in the order they run.
pub const TARGETS: &[&str] = &[
    "mobility_header",
    "binding_update",
    "neighbor_solicitation",
    "registration",
    "mip6d_conf",
    "setkey_conf",
    "toml_conf",
];

/// Builds the targets and runs each `seconds` long (all of them when `only` is empty).
pub fn fuzz(root: &Path, only: &[String], seconds: u64) -> anyhow::Result<()> {
    for t in only {
        if !TARGETS.contains(&t.as_str()) {
            bail!(
                "unknown fuzz target {t:?}; the targets: {}",
                TARGETS.join(", ")
            );
        }
    }
    let fuzz_dir = root.join("fuzz");
    let plus_toolchain = format!("+{}", crate::ebpf_toolchain()?.0);
    step("cargo fuzz build (nightly, AddressSanitizer)");
    run(Command::new("cargo")
        .current_dir(&fuzz_dir)
        .args([&plus_toolchain, "fuzz", "build"]))?;
    for t in TARGETS
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == *t))
    {
        step(&format!("fuzz {t}: {seconds} s"));
        let scratch = root.join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let seeds = fuzz_dir.join("corpus").join(t);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .args([&plus_toolchain, "fuzz", "run", t])
            .arg(&scratch)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1");
        let dict = fuzz_dir.join("dicts").join(format!("{t}.dict"));
        if dict.exists() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        // libFuzzer narrates every new path; keep that in a log and print its verdict.
        let log_path = root.join("target/fuzz-logs").join(format!("{t}.log"));
        std::fs::create_dir_all(log_path.parent().expect("a parent"))?;
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let status = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("cannot start {}", crate::show(&cmd)))?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in text.lines().filter(|l| {
            l.starts_with("Done ")
                || l.starts_with("stat::number_of_executed_units")
                || l.starts_with("stat::peak_rss_mb")
        }) {
            eprintln!("  {line}");
        }
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            for line in tail.into_iter().rev() {
                eprintln!("  | {line}");
            }
            bail!(
                "fuzz target {t} failed ({status}; log {}): the input is in fuzz/artifacts/{t}/; \
                 fix it and add the input to fuzz/regressions/{t}/",
                log_path.display()
            );
        }
    }
    Ok(())
}
