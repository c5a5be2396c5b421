//! `cargo xtask <command>`: everything a developer or CI runs, so the README needs two commands.

mod dist;
mod fuzz;
mod setup;
mod vmtest;

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent; quiet when everything is there).
    Setup,
    /// Build everything and run the lab in network namespaces.
    Run {
        /// Leave the lab up afterwards (namespaces halab-*, daemons running).
        #[arg(long)]
        interactive: bool,
        /// Remove a lab left up by --interactive.
        #[arg(long)]
        down: bool,
    },
    /// Benchmarks (release build), each side by side with its baselines in one run; a full
    /// run writes docs/bench/ (the figures of docs/BENCHMARKS.md). `dataplane`: per-packet cost
    /// of the XDP/TC paths next to reference programs, 1 to 1M bindings; `throughput`: packets
    /// per second gen → HA → sink against the kernel's forwarding and tunnels and a TUN
    /// tunnel; `signalling`: Binding Updates per second, floods, restart, 1M bindings;
    /// `restart`: forwarding across SIGKILLs.
    Bench {
        /// What to measure: all, dataplane, throughput, signalling or restart.
        #[arg(default_value = "all")]
        suite: String,
        /// Small counts and short runs: proves the suites work (CI runs `--quick all`); the
        /// numbers are not the figures.
        #[arg(long)]
        quick: bool,
    },
    /// The VM tier: Debian's kernel (ESP, 6.1) under qemu with hagent inside.
    Vmtest,
    /// Build the Debian package a router installs: target/dist/hagent_<version>_<arch>.deb
    /// (/usr/sbin/hagent with the eBPF object embedded, example configs, systemd units,
    /// sysctl.d, rt_protos.d, man pages, completions).
    Dist {
        /// Also install it here with dpkg, check it (version, examples, units) and purge it.
        #[arg(long)]
        check: bool,
    },
    /// The cargo-fuzz targets (libFuzzer): codecs, configuration parsers, the registration
    /// state machine. Long runs: `cargo xtask fuzz --seconds 3600 registration`.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
    /// ESP smoke test of the VM tier alone (no hagent inside).
    VmSmoke,
    /// Formatting, clippy (host and BPF target), unit and end-to-end tests, the VM tier.
    Test {
        /// Arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // xtask lives in <root>/xtask.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    std::env::set_current_dir(root)?;
    match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Run { interactive, down } => {
            setup::ensure()?;
            if !is_root() {
                bail!("the lab creates network namespaces and loads eBPF programs: run it as root");
            }
            // The lab lives in the tests crate, next to the topology code the end-to-end tests
            // use; xtask itself must build before setup has installed the eBPF toolchain.
            cargo(&["build", "-p", "ha-userspace", "--bin", "hagent"])?;
            let mut args = vec!["run", "--quiet", "-p", "tests", "--bin", "lab", "--"];
            if interactive {
                args.push("--interactive");
            }
            if down {
                args.push("--down");
            }
            cargo(&args)
        }
        Cmd::Bench { suite, quick } => {
            setup::ensure()?;
            bench(root, &suite, quick)
        }
        Cmd::Vmtest => {
            setup::ensure()?;
            vm_suite(true)
        }
        Cmd::VmSmoke => vmtest::smoke(),
        Cmd::Dist { check } => {
            setup::ensure()?;
            if check {
                dist::check(root)
            } else {
                dist::dist(root).map(|_| ())
            }
        }
        Cmd::Fuzz { seconds, targets } => {
            setup::ensure()?;
            fuzz::fuzz(root, &targets, seconds)
        }
        Cmd::Test { args } => {
            setup::ensure()?;
            test(&args)
        }
    }
}

fn test(args: &[String]) -> anyhow::Result<()> {
    step("cargo fmt --check");
    cargo(&["fmt", "--all", "--check"])?;
    // On the host, ha-ebpf builds as a library (its logic's unit tests); the BPF target is
    // checked separately below.
    step("cargo clippy (workspace, host)");
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    step("cargo clippy (ha-ebpf for bpfel-unknown-none, nightly)");
    let (toolchain, _) = ebpf_toolchain()?;
    run(Command::new("rustup").args([
        "run",
        &toolchain,
        "cargo",
        "clippy",
        "-p",
        "ha-ebpf",
        "--bins",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("cargo test --workspace (unit tests, BPF_PROG_TEST_RUN and namespace end-to-end tests)");
    if !is_root() {
        eprintln!(
            "\x1b[1;33m!!! not running as root: tests that need BPF or network namespaces will \
             FAIL (they never pass unrun). CI runs as root.\x1b[0m"
        );
    }
    let mut test_args = vec!["test", "--workspace"];
    if !args.is_empty() {
        test_args.push("--");
        test_args.extend(args.iter().map(String::as_str));
    }
    cargo(&test_args)?;
    if args.is_empty() {
        // Bounded fuzzing of every target (HAGENT_FUZZ_SECONDS each, 0 to skip).
        let seconds = std::env::var("HAGENT_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        if seconds > 0 {
            fuzz::fuzz(&std::env::current_dir()?, &[], seconds)?;
        } else {
            eprintln!("\x1b[1;33m!!! HAGENT_FUZZ_SECONDS=0: fuzzing SKIPPED\x1b[0m");
        }
    }
    if args.is_empty() {
        if is_root() {
            dist::check(&std::env::current_dir()?)?;
        } else {
            eprintln!("\x1b[1;33m!!! not running as root: the package check is SKIPPED\x1b[0m");
        }
    }
    if is_root() && args.is_empty() {
        // The benchmarks must keep working; their speed is not asserted here.
        step("cargo xtask bench --quick all (proves the benchmarks run; no speed asserted)");
        bench(&std::env::current_dir()?, "all", true)?;
        step("the VM tier: Debian's kernel under qemu (ESP, kernel 6.1)");
        vm_suite(true)?;
    }
    step("all checks passed");
    Ok(())
}

/// `target/release/hagent`, which the benchmarks and the VM tier run.
pub fn build_release_hagent() -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "--quiet",
        "-p",
        "ha-userspace",
        "--bin",
        "hagent",
    ])?;
    Ok(())
}

/// `cargo xtask bench [--quick] SUITE`: the release hagent and the bench binary.
fn bench(root: &std::path::Path, suite: &str, quick: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("benchmarks load eBPF programs and create a namespace: run them as root");
    }
    // The daemon the benchmarks start is the release build.
    build_release_hagent()?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.env("HAGENT_BIN", root.join("target/release/hagent"));
    if quick {
        cmd.env("HAGENT_BENCH_QUICK", "1");
    }
    run(cmd.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "tests",
        "--bin",
        "bench",
        "--",
        suite,
    ]))
}

/// Builds the release hagent and runs the guest tests.
fn vm_suite(all: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the VM tier needs root (apt-get, qemu)");
    }
    if all {
        // The guest tests with hagent inside use the release binary.
        build_release_hagent()?;
    }
    let root = std::env::current_dir()?;
    // The seed talk's HA mip6d.conf with its typo fixed and IPsec left on.
    let conf = std::fs::read_to_string(root.join("tests/fixtures/seed-ha-mip6d.conf"))?
        .replace("coo1", "c001");
    let dir = std::env::temp_dir().join("hagent-vmtest");
    std::fs::create_dir_all(&dir)?;
    let conf_path = dir.join("mip6d.conf");
    std::fs::write(&conf_path, conf)?;
    vmtest::suite(&root.join("target/release/hagent"), &conf_path, all)
}

/// The eBPF toolchain and the nightly date it is pinned to, from `[workspace.metadata.ebpf]`
/// in the workspace's Cargo.toml (the one place; ha-userspace/build.rs reads it too).
pub fn ebpf_toolchain() -> anyhow::Result<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let text = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let doc: toml::Table = text.parse().context("parsing the workspace Cargo.toml")?;
    let ebpf = doc
        .get("workspace")
        .and_then(|w| w.get("metadata"))
        .and_then(|m| m.get("ebpf"))
        .context("[workspace.metadata.ebpf] missing in Cargo.toml")?;
    let get = |k: &str| {
        ebpf.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("[workspace.metadata.ebpf] {k} missing in Cargo.toml"))
    };
    Ok((get("toolchain")?, get("date")?))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn step(what: &str) {
    eprintln!("\x1b[1;34m==> {what}\x1b[0m");
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args))
}

/// Runs a command with inherited output; an error names the exact command.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// A command as a shell line, for error messages.
pub fn show(cmd: &Command) -> String {
    let mut s: String = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_str()?, v?.to_str()?)))
        .collect();
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
