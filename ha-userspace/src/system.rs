//! Preconditions the host must meet before the daemon touches the kernel, each checked with a
//! message that says what is wrong and what to do.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Loading BPF programs and attaching XDP needs CAP_BPF/CAP_NET_ADMIN; we simply require root.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "hagent must run as root to load eBPF programs and attach XDP (running as uid {euid}); \
             try `sudo hagent ...`"
        );
    }
    Ok(())
}

/// The programs use CO-RE-free BTF-described maps; the kernel must expose its BTF.
pub fn require_btf() -> anyhow::Result<()> {
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        bail!(
            "the kernel exposes no BTF ({} is missing): hagent needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y",
            btf.display()
        );
    }
    Ok(())
}

/// The interface index of `name`, or an error naming the interface.
pub fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name)
        .with_context(|| format!("interface name {name:?} contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("interface {name:?} does not exist");
    }
    Ok(idx)
}
