//! Entry points of the hagent data plane. The logic lives in the library (`ha_ebpf::*`, unit
//! tested on the host) and in `kern` (maps, helpers); this file only binds it to the kernel.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod kern;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };

    /// Ingress of every interface the node serves.
    #[xdp]
    pub fn ha_xdp_ingress(ctx: XdpContext) -> u32 {
        crate::kern::xdp::entry(&ctx)
    }

    /// Reference: does nothing (see `kern::reference`).
    #[xdp]
    pub fn ha_xdp_pass(_ctx: XdpContext) -> u32 {
        aya_ebpf::bindings::xdp_action::XDP_PASS
    }

    /// Reference: a minimal IPv6 router (see `kern::reference`).
    #[xdp]
    pub fn ha_xdp_router(ctx: XdpContext) -> u32 {
        crate::kern::reference::router(&ctx)
    }

    /// Egress of every interface the node serves.
    #[classifier]
    pub fn ha_tc_egress(ctx: TcContext) -> i32 {
        crate::kern::tc::egress(&ctx)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        // The verifier rejects any path that could reach this; it exists to satisfy no_std.
        loop {}
    }

    /// `bpf_fib_lookup` and friends are GPL-only helpers.
    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

/// On the host this crate is only a library (unit tests, and a build-dependency of
/// `ha-userspace` so cargo rebuilds the object when its sources change).
#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "ha-ebpf is an eBPF object for bpfel-unknown-none; it is built by ha-userspace/build.rs \
         and embedded in `hagent`"
    );
    std::process::exit(2);
}
