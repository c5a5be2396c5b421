//! `cargo xtask setup`: installs what the build and the tests need on a fresh Debian machine.
//! Every step checks first, so a second run installs nothing and prints nothing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{is_root, run, show};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "iputils-ping",
    "ethtool",
    "tcpdump",
    "tshark",
    "python3-scapy",
    // The metrics test: a real HTTP client and a real Prometheus text parser.
    "curl",
    "python3-prometheus-client",
    "bpftool",
    "iproute2",
    // The benchmarks: a CPU profile of the data plane, and the font of the plots.
    "linux-perf",
    "fonts-dejavu-core",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// The fuzzer driver (`cargo xtask fuzz`, and the bounded runs in `cargo xtask test`).
const CARGO_FUZZ_VERSION: &str = "0.13.1";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// What is missing, as human-readable items (empty when all is present).
pub fn missing() -> Vec<String> {
    let mut m = Vec::new();
    let pkgs = missing_apt_packages();
    if !pkgs.is_empty() {
        m.push(format!("Debian packages: {}", pkgs.join(" ")));
    }
    if !nightly_has_rust_src() {
        m.push("rust-src for the nightly toolchain".into());
    }
    if !bpf_linker_ok() {
        m.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }
    if !bpffs_mounted() {
        m.push("bpffs at /sys/fs/bpf".into());
    }
    if !cargo_fuzz_ok() {
        m.push(format!("cargo-fuzz {CARGO_FUZZ_VERSION}"));
    }
    m
}

/// Runs `setup` only when something is missing (for `run` and `test`).
pub fn ensure() -> anyhow::Result<()> {
    let m = missing();
    if m.is_empty() {
        return Ok(());
    }
    eprintln!(
        "prerequisites missing ({}); running `cargo xtask setup`",
        m.join("; ")
    );
    setup()
}

pub fn setup() -> anyhow::Result<()> {
    let pkgs = missing_apt_packages();
    if !pkgs.is_empty() {
        require_root_for(&format!("installing Debian packages {}", pkgs.join(" ")))?;
        eprintln!("setup: installing Debian packages: {}", pkgs.join(" "));
        run_step(
            Command::new("apt-get").args(["update", "-q"]),
            "check network access to the Debian mirror",
        )?;
        run_step(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&pkgs),
            "see apt's message above; the packages must be installable from Debian's archive",
        )?;
    }

    let (toolchain, date) = crate::ebpf_toolchain()?;
    match nightly_version() {
        None => bail!(
            "the {toolchain} Rust toolchain is not installed; it is needed to build the eBPF \
             programs. Install it with `rustup toolchain install {toolchain}-{date} --profile \
             minimal` and make it `{toolchain}` (the pin is [workspace.metadata.ebpf] in \
             Cargo.toml)."
        ),
        Some(v) if !v.contains(&format!("{date})")) => eprintln!(
            "setup: warning: the eBPF programs are built and verified with the {toolchain} of \
             {date} ([workspace.metadata.ebpf] in Cargo.toml); installed is `{v}`: a different \
             LLVM may emit code the kernel's verifier rejects"
        ),
        Some(_) => {}
    }
    if !nightly_has_rust_src() {
        eprintln!("setup: adding rust-src to the {toolchain} toolchain (for -Z build-std=core)");
        run_step(
            Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                &toolchain,
            ]),
            "rustup must reach its distribution server, or install rust-src by hand",
        )?;
    }

    if !bpf_linker_ok() {
        eprintln!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a minute or two)"
        );
        let path = format!(
            "{LLVM_PREFIX}/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        // Without LLVM_PREFIX and LLVM 22 first on PATH, llvm-sys looks in /usr and fails to
        // find -lLLVM.
        run_step(
            Command::new("cargo")
                .env("PATH", path)
                .env("LLVM_PREFIX", LLVM_PREFIX)
                .args([
                    "install",
                    "bpf-linker",
                    "--locked",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                    "--force",
                ]),
            "check that llvm-22-dev and libpolly-22-dev are installed",
        )?;
    }

    if !cargo_fuzz_ok() {
        eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (libFuzzer driver)");
        run_step(
            Command::new("cargo").args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
                "--force",
            ]),
            "cargo must reach crates.io",
        )?;
    }

    if !bpffs_mounted() {
        require_root_for("mounting bpffs")?;
        eprintln!("setup: mounting bpffs at /sys/fs/bpf");
        run_step(
            Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]),
            "the kernel needs CONFIG_BPF_SYSCALL; in a container, /sys/fs/bpf must be writable",
        )?;
    }
    Ok(())
}

fn run_step(cmd: &mut Command, hint: &str) -> anyhow::Result<()> {
    let line = show(cmd);
    run(cmd).with_context(|| format!("setup step `{line}` failed: {hint}"))
}

fn require_root_for(what: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!("{what} needs root: run `sudo cargo xtask setup`");
    }
    Ok(())
}

fn missing_apt_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

/// `rustc --version` of the pinned eBPF toolchain, None when it is not installed.
fn nightly_version() -> Option<String> {
    let (toolchain, _) = crate::ebpf_toolchain().ok()?;
    Command::new("rustup")
        .args(["run", &toolchain, "rustc", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn nightly_has_rust_src() -> bool {
    let Ok((toolchain, _)) = crate::ebpf_toolchain() else {
        return false;
    };
    Command::new("rustup")
        .args([
            "component",
            "list",
            "--toolchain",
            &toolchain,
            "--installed",
        ])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == "rust-src")
        })
        .unwrap_or(false)
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false)
}

fn cargo_fuzz_ok() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        })
        .unwrap_or(false)
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                let _dev = f.next();
                f.next() == Some("/sys/fs/bpf") && f.next() == Some("bpf")
            })
        })
        .unwrap_or(false)
}
