//! Entry points and maps of the hagent data plane. The logic lives in the library
//! (`ha_ebpf::*`), which is unit-tested on the host; this file only binds it to the kernel.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::PerCpuArray,
        programs::XdpContext,
    };
    use ha_common::stats::{Counter, CounterValue};
    use ha_ebpf::{
        frame::Frame,
        parse::{ETH_P_IPV6, parse_l2},
    };

    /// Global per-CPU counters, indexed by [`Counter`].
    #[map(name = "HA_COUNTERS")]
    static HA_COUNTERS: PerCpuArray<CounterValue> =
        PerCpuArray::with_max_entries(Counter::COUNT, 0);

    /// The XDP context as a [`Frame`].
    struct Xdp<'a>(&'a XdpContext);

    impl Frame for Xdp<'_> {
        #[inline(always)]
        fn start(&self) -> usize {
            self.0.data()
        }
        #[inline(always)]
        fn end(&self) -> usize {
            self.0.data_end()
        }
    }

    #[inline(always)]
    fn count(counter: Counter, bytes: usize) {
        if let Some(slot) = HA_COUNTERS.get_ptr_mut(counter.index()) {
            // SAFETY: the slot is this CPU's copy of a per-CPU array element, valid for the
            // program's run; XDP programs do not migrate between CPUs while running.
            unsafe {
                (*slot).packets += 1;
                (*slot).bytes += bytes as u64;
            }
        }
    }

    /// Ingress program for every interface the home agent serves.
    #[xdp]
    pub fn ha_xdp_ingress(ctx: XdpContext) -> u32 {
        let frame = Xdp(&ctx);
        let len = frame.len();
        count(Counter::RxFrames, len);
        match parse_l2(&frame) {
            Ok(l2) if l2.ethertype == ETH_P_IPV6 => count(Counter::RxIpv6, len),
            Ok(_) => count(Counter::PassNotIpv6, len),
            Err(_) => count(Counter::PassTruncated, len),
        }
        xdp_action::XDP_PASS
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
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
