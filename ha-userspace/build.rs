//! Builds the eBPF object (`ha-ebpf`, nightly, bpfel-unknown-none) and leaves it in OUT_DIR,
//! where `dataplane.rs` embeds it with `include_bytes_aligned!`: one self-contained binary.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("ha-userspace has no parent directory"))?
        .join("ha-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ha-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        // The installed nightly; the userspace build itself stays on stable.
        aya_build::Toolchain::Nightly,
    )
    .context(
        "building the eBPF object failed; if bpf-linker or the nightly rust-src component is \
         missing, run `cargo xtask setup`",
    )
}
