//! Builds the eBPF object (`ha-ebpf`, bpfel-unknown-none, on the nightly toolchain pinned in the
//! workspace's `Cargo.toml`) and leaves it in OUT_DIR, where `dataplane.rs` embeds it with
//! `include_bytes_aligned!`: one self-contained binary.
//!
//! The nested cargo runs quietly: only the BPF compiler's real warnings and errors reach the
//! outer build (as `cargo:warning`), and cargo's own stderr only when the build fails — a
//! normal build prints nothing.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

/// The eBPF toolchain, from `[workspace.metadata.ebpf]` (the one place it is pinned).
fn pinned_toolchain(root: &Path) -> anyhow::Result<String> {
    let manifest = root.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table = text.parse().context("parsing the workspace Cargo.toml")?;
    doc.get("workspace")
        .and_then(|w| w.get("metadata"))
        .and_then(|m| m.get("ebpf"))
        .and_then(|e| e.get("toolchain"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("[workspace.metadata.ebpf] toolchain missing in Cargo.toml"))
}

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("ha-userspace has no parent directory"))?;
    let ebpf = root.join("ha-ebpf");
    println!("cargo:rerun-if-changed={}", ebpf.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("ha-common").display()
    );
    let toolchain = pinned_toolchain(root)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let target = match std::env::var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        e => bail!("unsupported endianness {e}"),
    };
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain, "cargo", "build", "--quiet"])
        .args(["--package", "ha-ebpf", "--bins", "--release"])
        .args(["--message-format=json", "--target", target])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir)
        .current_dir(root)
        // The host toolchain's settings must not leak into the nightly BPF build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                format!("--cfg=bpf_target_arch=\"{arch}\""),
                "-Cdebuginfo=2".into(),
                "-Clink-arg=--btf".into(),
            ]
            .join("\x1f"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("cannot run rustup (the eBPF build needs it; run `cargo xtask setup`)")?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut executables = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("reading the eBPF build's output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match msg["reason"].as_str() {
            Some("compiler-artifact") => {
                if let (Some(exe), Some(name)) =
                    (msg["executable"].as_str(), msg["target"]["name"].as_str())
                {
                    executables.push((name.to_string(), PathBuf::from(exe)));
                }
            }
            Some("compiler-message") => {
                let m = &msg["message"];
                // Real diagnostics only: warnings and errors, each line as a cargo warning.
                if matches!(m["level"].as_str(), Some("warning" | "error"))
                    && let Some(rendered) = m["rendered"].as_str()
                {
                    for l in rendered.lines() {
                        println!("cargo:warning={l}");
                    }
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        for l in stderr.lines() {
            println!("cargo:warning={l}");
        }
        bail!(
            "building the eBPF object with `rustup run {toolchain} cargo build -p ha-ebpf` failed \
             ({status}); if bpf-linker, the {toolchain} toolchain or its rust-src component is \
             missing, run `cargo xtask setup`"
        );
    }
    for name in ["ha-ebpf", "ha-bench"] {
        let (_, exe) = executables
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("the eBPF build produced no {name} object"))?;
        std::fs::copy(exe, out_dir.join(name))
            .with_context(|| format!("copying {} to OUT_DIR", exe.display()))?;
    }
    Ok(())
}
