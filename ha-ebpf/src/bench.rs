//! The throughput benchmark's own programs (`cargo xtask bench throughput`), a separate object
//! the daemon never loads:
//!
//! - `bench_gen`: the generator. Run by BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES in
//!   the generator's namespace, it writes the frame's headers from `BENCH_TEMPLATE` (the
//!   kernel recycles frame pages with whatever the receivers changed) and transmits it.
//! - `bench_sink`: on the sink's interface: counts every frame and whether it is the frame the
//!   device under test must produce (`BENCH_EXPECT`), then drops it.
//! - `bench_redirect`: the ceiling of the veth plumbing — redirects every frame to the egress
//!   interface without parsing it.
//! - `bench_pass`: XDP_PASS, on the kernel baselines' ingress: a veth delivers frames another
//!   program transmits only to a peer that runs XDP.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
        macros::{map, xdp},
        maps::{Array, DevMap, PerCpuArray},
        programs::XdpContext,
    };
    use ha_common::bench::{
        BenchExpect, BenchTemplate, SINK_COUNTERS, SINK_EXPECTED, SINK_FRAMES, SINK_OTHER,
        TEMPLATE_CHUNKS,
    };

    #[map(name = "BENCH_TEMPLATE")]
    static BENCH_TEMPLATE: Array<BenchTemplate> = Array::with_max_entries(1, 0);

    #[map(name = "BENCH_EXPECT")]
    static BENCH_EXPECT: Array<BenchExpect> = Array::with_max_entries(1, 0);

    #[map(name = "BENCH_SINK")]
    static BENCH_SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(SINK_COUNTERS, 0);

    /// Slot 0: CLOCK_MONOTONIC ns of the first expected frame since userspace zeroed it (the
    /// handover measurement).
    #[map(name = "BENCH_FIRST")]
    static BENCH_FIRST: Array<u64> = Array::with_max_entries(1, 0);

    /// Slot 0: the egress interface of `bench_redirect`.
    #[map(name = "BENCH_DEVMAP")]
    static BENCH_DEVMAP: DevMap = DevMap::with_max_entries(1, 0);

    #[xdp]
    pub fn bench_gen(ctx: XdpContext) -> u32 {
        let Some(t) = BENCH_TEMPLATE.get(0) else {
            return XDP_ABORTED;
        };
        let (data, end) = (ctx.data(), ctx.data_end());
        let chunks = t.chunks as usize;
        // Eight bytes at a time; the frame is never shorter than the template (the loader
        // checks), the bound check is for the verifier.
        for i in 0..TEMPLATE_CHUNKS {
            if i >= chunks {
                break;
            }
            let at = data + i * 8;
            if at + 8 > end {
                return XDP_ABORTED;
            }
            // SAFETY: `at..at + 8` is inside the packet (checked above).
            unsafe { core::ptr::write_unaligned(at as *mut u64, t.words[i]) };
        }
        XDP_TX
    }

    #[inline(always)]
    fn bump(slot: u32) {
        if let Some(c) = BENCH_SINK.get_ptr_mut(slot) {
            // SAFETY: a per-CPU slot, written only by this CPU.
            unsafe { *c += 1 };
        }
    }

    #[xdp]
    pub fn bench_sink(ctx: XdpContext) -> u32 {
        bump(SINK_FRAMES);
        let Some(e) = BENCH_EXPECT.get(0) else {
            return XDP_DROP;
        };
        let (data, end) = (ctx.data(), ctx.data_end());
        let mut expected = end - data == e.frame_len as usize;
        for w in &e.windows {
            // Bounded for the verifier: windows lie in the first 256 bytes.
            let at = data + (w.offset & 0xff) as usize;
            if at + 16 > end {
                expected = false;
                break;
            }
            // SAFETY: `at..at + 16` is inside the packet (checked above).
            let got: [u64; 2] = unsafe { core::ptr::read_unaligned(at as *const [u64; 2]) };
            if (got[0] ^ w.value[0]) & w.mask[0] != 0 || (got[1] ^ w.value[1]) & w.mask[1] != 0 {
                expected = false;
            }
        }
        bump(if expected { SINK_EXPECTED } else { SINK_OTHER });
        if expected {
            if let Some(first) = BENCH_FIRST.get_ptr_mut(0) {
                // SAFETY: a map value; racing CPUs write similar times.
                unsafe {
                    if *first == 0 {
                        *first = aya_ebpf::helpers::bpf_ktime_get_ns();
                    }
                }
            }
        }
        XDP_DROP
    }

    #[xdp]
    pub fn bench_redirect(_ctx: XdpContext) -> u32 {
        BENCH_DEVMAP.redirect(0, 0).unwrap_or(XDP_DROP)
    }

    #[xdp]
    pub fn bench_pass(_ctx: XdpContext) -> u32 {
        XDP_PASS
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("ha-bench is an eBPF object for bpfel-unknown-none, built by ha-userspace/build.rs");
    std::process::exit(2);
}
